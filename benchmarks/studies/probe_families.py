"""Probe (issue 33): a local search's checkpoint validation group with and without program families.

11 copies of one program (the start, coefficients all 1, and ten random coefficient sets),
digits MLP 64-128-10, 167 steps (the screened checkpoints' budget), trained by the batched
fast loop with the program evaluated once for all copies (``_Families``) and once per copy,
alternated 5 times in one process; medians.

    python benchmarks/studies/probe_families.py
"""

import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier

import metaloss_sk.training as tr
from metaloss_sk import SymbolicLoss
from metaloss_sk.nets import MLP

PROGRAM = "neg(mul(mul(y, square(sub(1.0, yhat))), log(yhat)))"


def main():
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X, y = (X / 16).astype(np.float32)[:1010], y.astype(np.int64)[:1010]
    net = NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
                              optimizer__weight_decay=5e-4, batch_size=128, max_epochs=30, train_split=None, verbose=0)
    n = len(SymbolicLoss(PROGRAM).program_) - 1
    rs = np.random.RandomState(0)
    losses = [SymbolicLoss(PROGRAM, coefficients=[1.0] * n)]
    losses += [SymbolicLoss(PROGRAM, coefficients=list(rs.uniform(0.5, 1.5, n))) for _ in range(10)]
    budget = tr.Budget(30, 167)
    families = tr._Families.__bool__
    times = {"families": [], "per copy": []}
    try:
        for _ in range(5):
            for mode in times:
                tr._Families.__bool__ = families if mode == "families" else (lambda self: False)
                start = time.perf_counter()
                list(tr._fit_fast(net, losses, X, y, budget, 0))
                times[mode].append(time.perf_counter() - start)
    finally:
        tr._Families.__bool__ = families
    medians = {k: float(np.median(v)) for k, v in times.items()}
    print(f"11 checkpoints, 167 steps: {medians['families']:.3f} s with families, {medians['per copy']:.3f} s with "
          f"one evaluation per copy ({medians['per copy'] / medians['families']:.2f}x)")


if __name__ == "__main__":
    main()
