"""How many Adam steps EvoMAL's rejection protocol needs.

300 random EvoMAL programs (repaired to use y and yhat) on 100 digits rows pushed
through a fresh 64-128-10 MLP: how many have no gradient, and which of the rest
the protocol rejects with 100, 250 and 1000 steps, and at what cost.

    python benchmarks/bench_rejection.py
"""

import datetime
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from metaloss_sk import SymbolicLoss
from metaloss_sk.filters import Probe
from metaloss_sk.nets import MLP
from metaloss_sk.primitives import EVOMAL_FUNCTION_SET
from metaloss_sk.program import SearchSpace


def main():
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor((X / 16).astype(np.float32))[:100]
    y = torch.as_tensor(y)[:100]
    torch.manual_seed(0)
    probe = Probe(MLP()(X).detach(), y, "multiclass")
    space, rs = SearchSpace(EVOMAL_FUNCTION_SET), np.random.RandomState(0)
    losses = [SymbolicLoss(str(space.repair(space.random_program(rs), rs))) for _ in range(300)]
    with_gradient = [loss for loss, f in zip(losses, probe.fingerprints(losses)) if f is not None]
    verdicts, seconds = {}, {}
    for steps in (100, 250, 1000):
        start = time.perf_counter()
        verdicts[steps] = np.array(probe.reject(with_gradient, steps=steps))
        seconds[steps] = time.perf_counter() - start
    lines = [
        "# Rejection protocol: steps needed",
        "",
        f"`python benchmarks/bench_rejection.py` on {datetime.date.today()}, 1 thread.",
        f"300 random programs; {300 - len(with_gradient)} have no gradient on the probe rows (dropped before "
        f"the protocol); the protocol runs on the other {len(with_gradient)}.",
        "",
        "| steps | rejected | differs from 1000 steps | seconds (all programs) |",
        "|---:|---:|---:|---:|",
    ]
    for steps in verdicts:
        lines.append(f"| {steps} | {int(verdicts[steps].sum())} | {int((verdicts[steps] != verdicts[1000]).sum())} "
                     f"| {seconds[steps]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results" / "rejection.md").write_text(text)


if __name__ == "__main__":
    main()
