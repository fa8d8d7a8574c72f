"""Cost of one local search against the same number of plain training steps.

EvoMAL's local search (BENCHMARKS.md target: at most 3x the plain steps) on
scikit-learn's digits (X / 16, float32) with a 64-128-10 MLP, batch 128 and
the reference's optimiser (SGD, lr 0.01, momentum 0.9, Nesterov, weight decay
5e-4). Both sides are timed in the same process, alternating, after a warm-up
run of each, with one torch thread and with torch's default; the table gives
medians over the repeats.

    python benchmarks/bench_refine.py [--steps 250] [--repeats 3]

A second table times the whole validated local search a search runs on a
fold (``local_search_losses`` with a skorch net, 10 checkpoints, a 500-step fitness
budget): every checkpoint trained for the budget (``screen_factor=None``, the
reference's way) against checkpoints screened at a third of it
(``screen_factor=3``, the default), with one torch thread.

A timing benchmark has nothing to resume, so nothing is cached; the table goes
to ``benchmarks/results/refine_speed.md``.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from metaloss_sk import LocalSearch, SymbolicLoss
from metaloss_sk.local_search import local_search_losses
from metaloss_sk.training import Budget, Trainer
from metaloss_sk.unrolled import learn_coefficients, learn_coefficients_group

RESULTS = Path(__file__).parent / "results" / "refine_speed.md"
OPTIMIZER_PARAMS = {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
BATCH_SIZE = 128


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)


def digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_valid, y_train, y_valid = train_test_split(
        X / 16, y, test_size=0.2, stratify=y, random_state=0)
    return (torch.tensor(X_train, dtype=torch.float32), torch.tensor(y_train),
            torch.tensor(X_valid, dtype=torch.float32), torch.tensor(y_valid))


def plain_training(steps, X, y, criterion):
    """The floor: a standard loop over shuffled in-memory batches."""
    start = time.perf_counter()
    torch.manual_seed(0)
    module = MLP()
    optimizer = torch.optim.SGD(module.parameters(), **OPTIMIZER_PARAMS)
    generator = torch.Generator().manual_seed(0)
    order, position = torch.randperm(len(X), generator=generator), 0
    for _ in range(steps):
        if position + BATCH_SIZE > len(X):
            order, position = torch.randperm(len(X), generator=generator), 0
        batch = order[position:position + BATCH_SIZE]
        position += BATCH_SIZE
        optimizer.zero_grad()
        criterion(module(X[batch]), y[batch]).backward()
        optimizer.step()
    return time.perf_counter() - start


def local_search(steps, data):
    start = time.perf_counter()
    result = learn_coefficients(SymbolicLoss(), MLP, *data, optimizer_params=OPTIMIZER_PARAMS,
                                meta_steps=steps, batch_size=BATCH_SIZE, random_state=0)
    assert result.n_nan_steps == 0
    return time.perf_counter() - start


def local_search_group(steps, data, n=8):
    """``n`` local searches learned together (batched), as a search's group of candidates learns them: time per loss."""
    start = time.perf_counter()
    results = learn_coefficients_group(
        [SymbolicLoss() for _ in range(n)], MLP, *data, optimizer=torch.optim.SGD, optimizer_params=OPTIMIZER_PARAMS,
        meta_steps=steps, meta_lr=1e-3, unroll=1, batch_size=BATCH_SIZE, random_state=np.random.RandomState(0),
        device="cpu")
    assert all(r.n_nan_steps == 0 for r in results)
    return (time.perf_counter() - start) / n


def measure(steps, repeats, data):
    X_train, y_train = data[:2]
    runs = {
        "plain CrossEntropyLoss": lambda: plain_training(steps, X_train, y_train, nn.CrossEntropyLoss()),
        "plain SymbolicLoss": lambda: plain_training(steps, X_train, y_train, SymbolicLoss()),
        "local search": lambda: local_search(steps, data),
        "local search, 8 together": lambda: local_search_group(steps, data),
    }
    for run in runs.values():  # warm-up: lazy imports, allocator, caches
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def validated(steps, repeats):
    """Medians of a validated local search (``local_search_losses``) per ``screen_factor``; confirmations counted."""
    from skorch import NeuralNetClassifier

    X, y = load_digits(return_X_y=True)
    X, y = (X[:1347] / 16).astype(np.float32), y[:1347]  # a fold's training rows, as in a 25 % split
    net = NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
                              optimizer__weight_decay=5e-4, batch_size=BATCH_SIZE, max_epochs=100,
                              train_split=None, verbose=0)
    settings = {"no checkpoints": LocalSearch(meta_steps=steps, n_checkpoints=0),
                "10 checkpoints, each 500 steps": LocalSearch(meta_steps=steps, screen_factor=None),
                "10 checkpoints, screened at 167 steps": LocalSearch(meta_steps=steps, screen_factor=3)}
    times, confirmed = {name: [] for name in settings}, {}
    for repeat in range(repeats + 1):  # the first is a warm-up
        for name, setting in settings.items():
            start = time.perf_counter()
            (result,) = local_search_losses(Trainer(net), lambda n, X, y: n.score(X, y), [SymbolicLoss()], X, y, 0,
                                      setting, Budget(100, 500), gradient_bound=10)
            if repeat:
                times[name].append(time.perf_counter() - start)
            confirmed[name] = bool(result.confirmed)
    return {name: (statistics.median(values), confirmed[name]) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="meta steps and plain steps (default 250)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)

    data = digits()
    load_before = os.getloadavg()[0]
    default_threads = torch.get_num_threads()
    rows = []
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        t = measure(args.steps, args.repeats, data)
        search, floor = t["local search"], t["plain CrossEntropyLoss"]
        group = t["local search, 8 together"]
        rows.append(
            f"| {threads} | {floor:.3f} | {t['plain SymbolicLoss']:.3f} | {search:.3f} "
            f"| {1e3 * search / args.steps:.2f} | **{search / floor:.2f}x** "
            f"| {search / t['plain SymbolicLoss']:.2f}x | {group:.3f} | **{group / floor:.2f}x** |"
        )
    torch.set_num_threads(1)
    checkpoint_rows = [f"| {name} | {t:.2f} | {'yes' if c else 'no'} |"
                       for name, (t, c) in validated(args.steps, args.repeats).items()]
    torch.set_num_threads(default_threads)

    command = "python benchmarks/bench_refine.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    table = "\n".join([
        f"# Local search cost: {args.steps} meta steps against {args.steps} plain training steps",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}, Python {platform.python_version()}",
        "- Task: digits (X / 16, float32, 1,437 training rows), 64-128-10 MLP, batch 128, "
        "SGD lr 0.01 momentum 0.9 Nesterov weight decay 5e-4; local search with unroll 1, "
        "meta Adam lr 1e-3 on cross-entropy's 4 coefficients",
        f"- Medians of {args.repeats} alternating runs after one warm-up run of each. "
        f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        f"(a shared machine: other jobs inflate the default-threads row most).",
        "",
        "| torch threads | plain steps, CrossEntropyLoss (s) | plain steps, SymbolicLoss (s) "
        "| local search (s) | ms per meta step | search / plain CE | search / plain SymbolicLoss "
        "| 8 searches together, per loss (s) | together / plain CE |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Target (BENCHMARKS.md): local search at most 3x the plain CrossEntropyLoss steps. "
        "The reference implementation takes about 13 ms per meta step (FIELD_NOTES.md). *8 together*: eight "
        "local searches learned together, as a search's group of candidates learns them "
        "(`candidates_per_task=8`): their inner steps run as one batched network with stacked parameters "
        "(issue 33; each loss agrees with learning it alone to float32 rounding).",
        "",
        "## The validated local search of a search's candidate (one torch thread)",
        "",
        "`local_search_losses` on 1,347 digits rows (a fold's training rows; 20 % of them held out for the "
        "checkpoints) with the same net as a skorch `NeuralNetClassifier`, cross-entropy, a 500-step "
        "fitness budget and the gradient bound; medians. *confirmed*: whether the best screened checkpoint "
        "was not the start, so it and the start trained for the whole budget.",
        "",
        "| local search | seconds | confirmed |",
        "|---|---|---|",
        *checkpoint_rows,
        "",
    ])
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
