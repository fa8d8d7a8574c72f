"""Command line: ``python -m metaloss_sk demo`` runs a loss search on scikit-learn's digits."""

import argparse
import sys
import time

import numpy as np


def _digits_demo(args):
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from skorch import NeuralNetClassifier

    from metaloss_sk import LossSearchCV
    from metaloss_sk.datasets import MLP

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    # EvoMAL's training settings: SGD with Nesterov momentum and weight decay, batch 128.
    net = NeuralNetClassifier(
        MLP, module__n_in=64, module__n_hidden=128, module__n_out=10,
        lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True, optimizer__weight_decay=5e-4,
        batch_size=128, max_epochs=args.epochs, train_split=None, verbose=0,
    )
    print(f"Loss search on digits ({len(X_train)} training rows, {len(X_test)} test rows), "
          f"an MLP 64-128-10, {args.epochs} epochs per candidate, {args.cv}-fold CV, "
          f"population {args.population}, at most {args.max_time:.0f} s.", flush=True)
    search = LossSearchCV(
        net, population_size=args.population, generations=args.generations, cv=args.cv,
        max_time=args.max_time, n_jobs=args.n_jobs, random_state=args.seed, verbose=1,
    )
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"Search took {time.perf_counter() - start:.0f} s and trained "
          f"{search.search_stats_['fold_fits']} networks.\n")

    def test_accuracy(criterion):
        scores = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = NeuralNetClassifier(**{**net.get_params(deep=False), "criterion": criterion})
            scores.append(model.fit(X_train, y_train).score(X_test, y_test))
        return np.mean(scores), np.std(scores)

    print(f"Test accuracy over {args.seeds} training seeds (same net, same budget):")
    for name, criterion in [("cross-entropy", torch.nn.CrossEntropyLoss), ("found loss", search.best_loss_)]:
        mean, std = test_accuracy(criterion)
        print(f"  {name:<14} {mean:.4f} +- {std:.4f}")
    print(f"\nFound loss: {search.best_loss_}\nAs a program: {search.best_loss_.program}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m metaloss_sk", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="search a loss on scikit-learn's digits and compare it with "
                                            "cross-entropy on a held-out test set")
    demo.add_argument("--max-time", type=float, default=240.0, help="search time budget in seconds (default 240)")
    demo.add_argument("--generations", type=int, default=50, help="maximum generations (default 50)")
    demo.add_argument("--population", type=int, default=25, help="population size (default 25)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs per network (default 30)")
    demo.add_argument("--cv", type=int, default=3, help="cross-validation folds (default 3)")
    demo.add_argument("--seeds", type=int, default=5, help="training seeds for the final comparison (default 5)")
    demo.add_argument("--n-jobs", type=int, default=2, help="parallel jobs (default 2)")
    demo.add_argument("--seed", type=int, default=0, help="random_state of the search (default 0)")
    demo.set_defaults(run=_digits_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
