"""Wall time of a whole small search, this checkout against another, in alternating fresh processes.

    python benchmarks/studies/search_time_vs.py --against /path/to/other/checkout [--rounds 4]

Each round runs ``same_results.py record`` (two small searches: GP-LFL on a
digits subset with the tuned rate and the contest, EvoMAL with a local search
on every candidate on iris) once with each checkout's package first on
``PYTHONPATH``, alternating which goes first, and prints the seconds of each
and the ratio of the medians. Both runs also record their results, which are
compared: a speed figure means little if the searches differ.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("same_results.py")


def run(checkout, out):
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, str(SCRIPT), "record", out], env=env, check=True, cwd=tempfile.gettempdir(),
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the other checkout's root (its metaloss_sk/ is imported)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    times = {"this": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {"this": f"{tmp}/this.json", "other": f"{tmp}/other.json"}
        paths = {"this": HERE, "other": Path(args.against).resolve()}
        for r in range(args.rounds):
            for name in (("this", "other") if r % 2 == 0 else ("other", "this")):
                times[name].append(run(paths[name], outs[name]))
                print(f"round {r + 1} {name}: {times[name][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        same = json.load(open(outs["this"])) == json.load(open(outs["other"]))
    this, other = statistics.median(times["this"]), statistics.median(times["other"])
    print(f"median: this {this:.2f} s, other ({args.against}) {other:.2f} s; this / other = {this / other:.3f}; "
          f"{'same' if same else 'DIFFERENT'} results")


if __name__ == "__main__":
    main()
