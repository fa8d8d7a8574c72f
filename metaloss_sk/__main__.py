"""Command line: ``python -m metaloss_sk demo`` runs a loss search on scikit-learn's digits."""

import argparse
import sys
import time

import numpy as np


def _digits_demo(args):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from skorch import NeuralNetClassifier

    from metaloss_sk import Evolution, LossSearchCV
    from metaloss_sk.nets import MLP

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
        net, evolution=Evolution(population_size=args.population, tournament_size=min(4, args.population)),
        generations=args.generations, cv=args.cv,
        max_time=args.max_time, n_jobs=args.n_jobs, random_state=args.seed, verbose=1,
    )
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"Search took {time.perf_counter() - start:.0f} s and trained "
          f"{search.search_stats_['fold_fits']} networks.\n")
    return _compare(search, net, X_train, y_train, X_test, y_test, args.seeds)


def _compare(search, net, X_train, y_train, X_test, y_test, n_seeds):
    """Test accuracy of the found loss beside the usual loss (at the net's and the tuned rate) and the best
    known loss, each trained with the same ``n_seeds`` weight seeds, and a one-line verdict."""
    import torch
    from skorch import NeuralNetClassifier

    from metaloss_sk import SymbolicLoss

    base = search.baseline_
    known = [k for k in base["known_losses"][1:] if np.isfinite(k["mean_test_score"])]
    best_known = max(known, key=lambda k: k["mean_test_score"]) if known else None
    found_name = next((k["name"] for k in base["known_losses"] if k["program"] == str(search.best_loss_.program_)),
                      None)
    found_label = "found loss" if found_name is None else f"found loss ({found_name})"
    rows = [(f"{found_label}, lr {search.best_lr_:g}", search.best_loss_, search.best_lr_),
            (f"cross-entropy, lr {net.lr:g}", torch.nn.CrossEntropyLoss, net.lr),
            (f"cross-entropy, tuned lr {search.search_lr_:g}", torch.nn.CrossEntropyLoss, search.search_lr_)]
    if best_known is not None and best_known["name"] != found_name:
        rows.append((f"{best_known['name']}, lr {search.search_lr_:g}",
                     SymbolicLoss(best_known["program"], task="multiclass"), search.search_lr_))
    print(f"Test accuracy over {n_seeds} training seeds (same net and budget; the tuned lr is the one CV chose "
          "for cross-entropy, which the search ran at):")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: one thread is fastest, and a busy machine is not oversubscribed
    try:
        scores = {}
        for name, criterion, lr in rows:
            accuracies = []
            for seed in range(n_seeds):
                torch.manual_seed(seed)
                model = NeuralNetClassifier(**{**net.get_params(deep=False), "criterion": criterion, "lr": lr})
                accuracies.append(model.fit(X_train, y_train).score(X_test, y_test))
            scores[name] = np.array(accuracies)
    finally:
        torch.set_num_threads(threads)
    found = scores[rows[0][0]]
    for name, values in scores.items():
        paired = "" if values is found else "   found loss - it, per seed: " + " ".join(
            f"{d:+.4f}" for d in found - values)
        print(f"  {name:<36} {values.mean():.4f} +- {values.std():.4f}{paired}")
    print(f"\nFound loss: {search.best_loss_}\nPer class (p: the true class's probability, q: another's): "
          f"{search.best_loss_.per_class()}\nAs a program: {search.best_loss_.program}")
    print(_verdict(scores, rows[0][0], found_name))
    return 0


def _verdict(scores, found_name, known_name):
    """One line: is the found loss better than the best of the others, by how much, on how many seeds."""
    found = scores[found_name]
    rival_name, rival = max(((n, v) for n, v in scores.items() if n != found_name), key=lambda item: item[1].mean())
    d = found - rival
    if known_name is not None:
        head = f"Verdict: no evolved program beat the known losses on CV; the search returned {known_name}."
    else:
        head = "Verdict: the found loss is " + ("better than" if d.mean() > 0 else "no better than")
        head += " the best of the others."
    return (f"{head} Against {rival_name}: {d.mean():+.4f} test accuracy, higher on {int((d > 0).sum())} of "
            f"{len(d)} seeds.")


_BUILTIN = {
    "digits": ("load_digits", "multiclass"),
    "iris": ("load_iris", "multiclass"),
    "wine": ("load_wine", "multiclass"),
    "breast_cancer": ("load_breast_cancer", "binary"),
    "diabetes": ("load_diabetes", "regression"),
}


def _load_data(args):
    """Features, target and task from ``--data`` or ``--csv``; everything checked before any training."""
    import sklearn.datasets

    if args.csv is None:
        loader, task = _BUILTIN[args.data]
        X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
        return X, y, task if args.task == "auto" else args.task
    try:
        import pandas as pd
    except ImportError:
        raise ValueError("--csv needs pandas, which is not installed: pip install pandas") from None
    frame = pd.read_csv(args.csv)
    if args.target not in frame.columns:
        raise ValueError(f"--target {args.target!r} is not a column of {args.csv} "
                         f"(columns: {', '.join(map(str, frame.columns))})")
    missing = [str(c) for c in frame.columns if frame[c].isna().any()]
    if missing:
        raise ValueError(f"{args.csv} has missing values in column(s) {', '.join(map(repr, missing))}; "
                         "fill or drop them first (the search needs every value).")
    y = frame.pop(args.target).to_numpy()
    text = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        print(f"One-hot encoding the non-numeric column(s) {', '.join(map(repr, text))}.", file=sys.stderr)
    X = frame  # the raw columns: _features encodes them, inside the saved model too
    task = args.task
    if task == "auto":
        task = _guess_task(y)
        print(f"Task: {task} (guessed from --target {args.target!r}; override with --task).", file=sys.stderr)
    return X, y, task


def _features(X):
    """The unfitted feature steps: text columns of a DataFrame one-hot encoded, then every column standardised.

    The categories are those of all of ``X`` (a category seen only in the test
    rows still gets its column); new rows with an unknown category get zeros.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if not hasattr(X, "columns"):  # a built-in data set's array
        return StandardScaler()
    import pandas as pd

    text = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if not text:
        return StandardScaler()
    categories = OneHotEncoder().fit(X[text]).categories_
    onehot = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
    return make_pipeline(ColumnTransformer([("onehot", onehot, text)], remainder="passthrough"), StandardScaler())


def _guess_task(y):
    """Regression for numbers with many distinct values; otherwise binary or multiclass by the class count."""
    classes = np.unique(y)
    numeric = np.issubdtype(y.dtype, np.number)
    if numeric and (len(classes) > 20 or not np.all(np.mod(classes, 1) == 0)):
        return "regression"
    return "binary" if len(classes) == 2 else "multiclass"


def _search(args):
    import torch
    from sklearn.model_selection import train_test_split
    from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor

    from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule, _json
    from metaloss_sk.io import SEARCH_RESULT_FORMAT, hall_of_fame_to_dict, loss_to_dict
    from metaloss_sk.nets import MLP

    X, y, task = _load_data(args)
    stratify = None if task == "regression" else y
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=args.test_size, stratify=stratify,
                                                        random_state=args.seed)
    features = _features(X).fit(X_train)
    X_train, X_test = (features.transform(a).astype(np.float32) for a in (X_train, X_test))
    if task == "regression":
        y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
    n_out = {"multiclass": len(np.unique(y_train)), "binary": 1, "regression": 1}[task]
    net_class = {"multiclass": NeuralNetClassifier, "binary": NeuralNetBinaryClassifier,
                 "regression": NeuralNetRegressor}[task]
    optimizer = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[args.optimizer]
    extra = {"optimizer__momentum": args.momentum} if args.optimizer == "sgd" else {}
    net = net_class(MLP, module__n_in=X_train.shape[1], module__n_hidden=args.hidden, module__n_out=n_out,
                    optimizer=optimizer, lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
                    train_split=None, verbose=0, **extra)
    local_search = None if args.local_search == "none" else LocalSearch(candidates=args.local_search,
                                                                          meta_steps=args.meta_steps)
    search = LossSearchCV(
        net, evolution=Evolution(population_size=args.population, tournament_size=min(4, args.population)),
        schedule=Schedule(min_resources=args.max_steps or "auto"),
        generations=args.generations, max_time=args.max_time,
        cv=args.cv, local_search=local_search, n_jobs=args.n_jobs, checkpoint=args.checkpoint,
        random_state=args.seed, verbose=0 if args.quiet else 1,
    )
    search.fit(X_train, y_train)
    result = {
        "format": SEARCH_RESULT_FORMAT, "version": 1,
        "task": task,
        "best_loss": loss_to_dict(search.best_loss_),
        "best_loss_infix": str(search.best_loss_),
        "cv_score": search.best_score_,
        "test_score": search.score(X_test, y_test),
        "baseline": search.baseline_,
        "hall_of_fame": hall_of_fame_to_dict(search.hall_of_fame_, task=task),
        "search_stats": search.search_stats_,
    }
    print(f"Found loss: {search.best_loss_}\nCV score {search.best_score_:.4f}, "
          f"test score {result['test_score']:.4f}")
    if search.baseline_ is not None and args.quiet:  # else the search's own summary said it
        from metaloss_sk.results import summary_lines

        for line in summary_lines(search.best_loss_, search.best_score_, search.baseline_["found_split_scores"],
                                  search.baseline_)[1:]:
            print(line.strip())
    if args.output:
        _json.write(args.output, result)
        print(f"Results written to {args.output}; metaloss_sk.io.load_loss({args.output!r}) reads the loss.")
    if args.model:
        import joblib
        from sklearn.pipeline import make_pipeline

        model = make_pipeline(features, search)  # the search casts rows to float32 itself
        joblib.dump(model, args.model)
        rows = "raw features" if args.csv is None else f"a DataFrame of the feature columns of {args.csv}"
        print(f"Fitted model written to {args.model}; joblib.load({args.model!r}).predict(X) predicts new rows "
              f"({rows}, as they are: the model encodes and scales them).")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """The usage line, then the error: two lines, as argparse writes them."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind):
    def convert(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return convert


def main(argv=None):
    parser = _Parser(prog="python -m metaloss_sk",
                     description="Learn symbolic loss functions for neural networks (EvoMAL).")
    from metaloss_sk import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="search a loss on scikit-learn's digits and compare it with "
                                            "cross-entropy on a held-out test set")
    demo.add_argument("--max-time", type=_positive(float), default=150.0,
                      help="time budget of the genetic search in seconds (default 150)")
    demo.add_argument("--generations", type=_positive(int), default=50, help="maximum generations (default 50)")
    demo.add_argument("--population", type=_positive(int), default=25, help="population size (default 25)")
    demo.add_argument("--epochs", type=_positive(int), default=30, help="training epochs per network (default 30)")
    demo.add_argument("--cv", type=_positive(int), default=3, help="cross-validation folds (default 3)")
    demo.add_argument("--seeds", type=_positive(int), default=5,
                      help="training seeds for the final comparison (default 5)")
    demo.add_argument("--n-jobs", type=int, default=2, help="parallel jobs (default 2)")
    demo.add_argument("--seed", type=int, default=0, help="random_state of the search (default 0)")
    demo.set_defaults(run=_digits_demo)

    search = commands.add_parser("search", help="search a loss for an MLP on a built-in data set or a CSV file")
    source = search.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", choices=sorted(_BUILTIN), help="a scikit-learn data set")
    source.add_argument("--csv", help="a CSV file with a header row (use with --target)")
    search.add_argument("--target", help="the target column of --csv")
    search.add_argument("--task", choices=["auto", "multiclass", "binary", "regression"], default="auto",
                        help="what the net predicts (default: from the data)")
    search.add_argument("--hidden", type=_positive(int), default=128, help="hidden units of the MLP (default 128)")
    search.add_argument("--epochs", type=_positive(int), default=20, help="training epochs (default 20)")
    search.add_argument("--lr", type=_positive(float), default=0.05, help="learning rate (default 0.05)")
    search.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="optimizer (default sgd)")
    search.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    search.add_argument("--batch-size", type=_positive(int), default=128, help="batch size (default 128)")
    search.add_argument("--population", type=_positive(int), default=25, help="population size (default 25)")
    search.add_argument("--generations", type=_positive(int), default=10, help="maximum generations (default 10)")
    search.add_argument("--max-time", type=_positive(float), default=None, help="time budget in seconds")
    search.add_argument("--max-steps", type=_positive(int), default=None,
                        help="optimizer steps per candidate in the genetic search (default: 500, or the "
                             "--epochs budget if smaller); the winner is chosen at the --epochs budget")
    search.add_argument("--cv", type=_positive(int), default=3, help="cross-validation folds (default 3)")
    search.add_argument("--local-search", choices=["none", "winners", "all"], default="none",
                        help="EvoMAL's coefficient learning (default none)")
    search.add_argument("--meta-steps", type=_positive(int), default=250, help="local search steps (default 250)")
    search.add_argument("--test-size", type=float, default=0.25, help="held-out test fraction (default 0.25)")
    search.add_argument("--n-jobs", type=int, default=1, help="parallel jobs (default 1)")
    search.add_argument("--checkpoint", help="JSON checkpoint file: written every generation, resumed if present")
    search.add_argument("--output", help="write the found loss and results to this JSON file "
                                         "(metaloss_sk.io.load_loss reads the loss from it)")
    search.add_argument("--model", help="write the fitted model (one-hot encoding of text columns, scaling and "
                                        "refit net) to this file with joblib, for predictions on new raw rows")
    search.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    search.add_argument("--quiet", action="store_true", help="no progress output")
    search.set_defaults(run=_search)

    args = parser.parse_args(argv)
    if getattr(args, "csv", None) is not None and not args.target:
        parser.error("--csv needs --target")
    if getattr(args, "test_size", 0.25) is not None and not 0 < getattr(args, "test_size", 0.25) < 1:
        parser.error("--test-size must be between 0 and 1")
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as exc:
        commands.choices[args.command].error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
