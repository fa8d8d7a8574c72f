"""metaloss_sk.__main__: the command line (demo and search) runs as documented."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from metaloss_sk.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_compares_with_cross_entropy(capsys):
    main(["demo", "--max-time", "5", "--generations", "1", "--population", "3", "--epochs", "5",
          "--seeds", "1", "--cv", "2", "--n-jobs", "1"])
    out = capsys.readouterr().out
    assert "cross-entropy" in out and "found loss" in out and "Found loss:" in out and "Verdict:" in out


def test_search_writes_a_result_that_load_loss_reads_and_a_model_that_predicts(tmp_path, capsys):
    import joblib
    from sklearn.datasets import load_iris

    from metaloss_sk.io import load_loss

    output, model = tmp_path / "result.json", tmp_path / "model.joblib"
    main(["search", "--data", "iris", "--generations", "1", "--population", "3", "--epochs", "4", "--lr", "0.3",
          "--hidden", "8", "--cv", "2", "--quiet", "--output", str(output), "--model", str(model)])
    result = json.loads(output.read_text())
    assert result["best_loss"]["format"] == "metaloss_sk.loss"
    assert 0 <= result["test_score"] <= 1
    assert str(load_loss(output)) == result["best_loss_infix"]
    X, y = load_iris(return_X_y=True)
    assert set(joblib.load(model).predict(X[:10])) <= set(y)  # raw rows in, labels out
    out = capsys.readouterr().out
    assert "load_loss" in out and "joblib.load" in out and "usual loss, lr 0.3" in out and "best_loss_ is" in out


def _csv(tmp_path, text):
    csv = tmp_path / "data.csv"
    csv.write_text(text)
    return str(csv)


def test_a_csv_with_a_missing_value_is_refused_before_the_search_naming_the_column(tmp_path, capsys):
    csv = _csv(tmp_path, "a,b,t\n1,2,0\n3,,1\n" + "5,6,0\n7,8,1\n" * 10)
    with pytest.raises(SystemExit):
        main(["search", "--csv", csv, "--target", "t", "--output", str(tmp_path / "r.json")])
    assert "missing values in column(s) 'b'" in capsys.readouterr().err


def test_a_csv_text_column_is_one_hot_encoded_and_an_integer_target_with_many_values_is_regression(tmp_path):
    from metaloss_sk.__main__ import _features, _load_data

    rng = np.random.default_rng(0)
    rows = [f"{rng.normal():.3f},{'abc'[i % 3]},{int(rng.integers(0, 300))}" for i in range(90)]
    csv = _csv(tmp_path, "x,colour,t\n" + "\n".join(rows) + "\n")
    args = argparse.Namespace(csv=csv, target="t", task="auto", data=None)
    X, y, task = _load_data(args)
    assert _features(X).fit_transform(X).shape == (90, 4) and task == "regression"
    assert _load_data(argparse.Namespace(csv=csv, target="t", task="multiclass", data=None))[2] == "multiclass"


def test_the_model_of_a_csv_search_predicts_raw_rows_with_text_columns(tmp_path):
    import joblib
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    rows = [f"{x[i]:.3f},{['usa', 'japan', 'europe'][i % 3]},{'ab'[bool(x[i] > 0)]}" for i in range(60)]
    csv = _csv(tmp_path, "x,origin,t\n" + "\n".join(rows) + "\n")
    model = tmp_path / "model.joblib"
    main(["search", "--csv", csv, "--target", "t", "--generations", "1", "--population", "3", "--epochs", "5",
          "--batch-size", "8", "--lr", "0.3", "--hidden", "4", "--cv", "2", "--quiet", "--model", str(model)])
    raw = pd.read_csv(csv).drop(columns="t")
    predicted = joblib.load(model).predict(raw.head(7))  # the CSV's feature columns as they are, text included
    assert len(predicted) == 7 and set(predicted) <= {"a", "b"}


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "metaloss_sk" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["search", "--data", "nope"], "invalid choice"),
    (["search", "--csv", "x.csv"], "--csv needs --target"),
    (["search", "--data", "iris", "--epochs", "0"], "must be positive"),
    (["search", "--data", "iris", "--csv", "x.csv"], "not allowed with"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_the_usage_line_and_a_one_line_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: ") and message in lines[-1] and "error:" in lines[-1]


def test_a_missing_target_column_is_named(tmp_path, capsys):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SystemExit):
        main(["search", "--csv", str(csv), "--target", "c"])
    assert "'c' is not a column" in capsys.readouterr().err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    for option in ("--data", "--csv", "--target", "--generations", "--n-jobs", "--checkpoint", "--output"):
        assert option in out


