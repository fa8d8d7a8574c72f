"""The command line and the examples run as documented."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metaloss_sk.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_compares_with_cross_entropy(capsys):
    main(["demo", "--max-time", "5", "--generations", "1", "--population", "3", "--epochs", "2",
          "--seeds", "1", "--cv", "2", "--n-jobs", "1"])
    out = capsys.readouterr().out
    assert "cross-entropy" in out and "found loss" in out and "Found loss:" in out


def test_search_writes_the_found_loss_as_json(tmp_path, capsys):
    output = tmp_path / "result.json"
    main(["search", "--data", "iris", "--generations", "1", "--population", "3", "--epochs", "2",
          "--hidden", "8", "--cv", "2", "--quiet", "--output", str(output)])
    result = json.loads(output.read_text())
    assert result["best_loss"]["format"] == "metaloss_sk.loss"
    assert 0 <= result["test_score"] <= 1


def test_search_on_a_csv_file(tmp_path):
    from sklearn.datasets import load_diabetes
    frame = load_diabetes(as_frame=True).frame
    csv = tmp_path / "diabetes.csv"
    frame.to_csv(csv, index=False)
    main(["search", "--csv", str(csv), "--target", "target", "--generations", "1", "--population", "3",
          "--epochs", "2", "--hidden", "8", "--cv", "2", "--quiet", "--lr", "0.01"])


@pytest.mark.parametrize("argv, message", [
    (["search", "--data", "nope"], "invalid choice"),
    (["search", "--csv", "x.csv"], "--csv needs --target"),
    (["search", "--data", "iris", "--epochs", "0"], "must be positive"),
    (["search", "--data", "iris", "--csv", "x.csv"], "not allowed with"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_a_one_line_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


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


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_runs(script, tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)], check=True,
                   cwd=tmp_path, timeout=600, capture_output=True)
