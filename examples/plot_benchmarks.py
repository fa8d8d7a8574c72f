"""
The benchmark figures
=====================

The quality benchmark (``python benchmarks/bench_quality.py --mode full``)
compares the found losses with what a practitioner gets without a search, on
six tasks. This example reruns nothing: it reads the committed results under
``benchmarks/results/`` (the table of ``quality_full.md`` and the figures the
benchmark drew) and shows them.
"""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs an example in its own folder, without __file__
    HERE = Path.cwd()
RESULTS = HERE.parent / "benchmarks" / "results"
report = (RESULTS / "quality_full.md").read_text()
print(report.splitlines()[2])  # the command, date and machine

# %%
# Test error against the usual loss
# ---------------------------------
# The summary table's mean test error per method and task, over 5 training
# seeds, divided by the usual loss's (below 1 is better). Classification
# tasks report the test error in %, regression ones the test MSE.
summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
rows = [line.strip("|").split("|") for line in summary.splitlines() if line.startswith("| ")]
tasks = [cell.strip() for cell in rows[0][1:] if "transfer" not in cell]
means = {
    row[0].strip(): [
        float(re.sub(r"[*]", "", cell).split("±")[0]) for cell in row[1 : len(tasks) + 1]
    ]
    for row in rows[1:]
}
methods = ["usual loss, lr tuned", "practitioner's pick", "GP-LFL (the default search)", "EvoMAL"]
usual = np.array(means["usual loss"])

fig, ax = plt.subplots(figsize=(10, 4))
width = 0.8 / len(methods)
for k, method in enumerate(methods):
    ax.bar(
        np.arange(len(tasks)) + (k - (len(methods) - 1) / 2) * width,
        np.array(means[method]) / usual,
        width,
        label=method,
    )
ax.axhline(1.0, color="k", lw=1, ls="--", label="usual loss")
ax.set_xticks(np.arange(len(tasks)), tasks)
ax.set_ylabel("test error / usual loss's")
ax.set_title("Quality benchmark, full mode (benchmarks/results/quality_full.md)")
ax.set_ylim(0, 1.5)
ax.legend(fontsize="small", ncol=3, loc="upper center")
fig.tight_layout()


# %%
# The figures the benchmark drew
# ------------------------------
# The found losses' shapes, the searches' progress, and the test error
# during the final trainings, as committed.
def show(name, width):
    image = plt.imread(RESULTS / name)
    height, pixels = image.shape[:2]
    fig, ax = plt.subplots(figsize=(width, width * height / pixels))
    ax.imshow(image)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)


show("loss_shapes_full.png", 14)
show("search_progress_full.png", 14)
show("test_curves_full.png", 12)
