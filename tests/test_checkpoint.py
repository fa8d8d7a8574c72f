"""metaloss_sk.checkpoint: the search state round-trips through JSON; a search resumes from it as if
never interrupted."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import classifier, iris

from metaloss_sk import Evolution, LossSearchCV, SymbolicLoss, parse
from metaloss_sk.checkpoint import SearchState, load_checkpoint, save_checkpoint
from metaloss_sk.records import TOTALS, Outcome, Row, Rung

CE = "neg(mul(y, log(yhat)))"


def test_search_state_round_trips_through_strict_json(tmp_path):
    rng = np.random.RandomState(3)
    rng.uniform(size=5)
    state = SearchState(population=[parse(CE), parse("square(sub(y, yhat))")], rng=rng, generation=4,
                        best=-math.inf, stale=1, elapsed=2.5,
                        history=[{"generation": 0, "best_score": math.nan, "median_score": 0.5}],
                        fold_seeds=[1, 2], refit_seed=9, evaluator={"rows": [], "keys": {}, "totals": {}})
    path = tmp_path / "state.json"
    save_checkpoint(path, state, "sig")
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the file"))
    back = load_checkpoint(path, "sig")
    assert back.population == state.population and back.generation == 4 and back.best == -math.inf
    assert back.fold_seeds == [1, 2] and back.refit_seed == 9 and math.isnan(back.history[0]["best_score"])
    assert back.rng.uniform() == rng.uniform()
    with pytest.raises(ValueError, match="other settings"):
        load_checkpoint(path, "another")
    assert load_checkpoint(tmp_path / "missing.json", "sig") is None


def test_the_evaluator_records_round_trip_with_their_outcomes(tmp_path):
    failed = Outcome("nan", "the score is not finite")
    rows = {CE: Row(parse(CE), SymbolicLoss(CE), 0, rungs=[Rung(6, [0.5, math.nan], outcome=failed)]),
            "abs(y)": Row(parse("abs(y)"), SymbolicLoss("abs(y)"), 1,
                          rejection=Outcome("rejected", "no gradient: zero or non-finite on the probe rows")),
            "neg(y)": Row(parse("neg(y)"), SymbolicLoss("neg(y)"), 1, rungs=[Rung(6, [0.25, 0.75])],
                          equivalent_to=CE)}
    evaluator = SimpleNamespace(rows=rows, keys={"k": CE}, totals=dict.fromkeys(TOTALS, 1))
    state = SearchState(population=[parse(CE)], rng=np.random.RandomState(0))
    state.record(evaluator)
    assert list(state.evaluator["rows"][0]["rungs"][0]) == ["n_resources", "scores", "n_seeds", "fit_time", "status",
                                                            "message", "other_scores"]  # the layout of VERSION 2
    save_checkpoint(tmp_path / "state.json", state, "sig")
    restored = SimpleNamespace()
    load_checkpoint(tmp_path / "state.json", "sig").restore(restored)
    assert list(restored.rows) == list(rows) and restored.keys == {"k": CE} and restored.totals == evaluator.totals
    for key, row in rows.items():
        back = restored.rows[key]
        assert (back.outcome, back.status, back.message) == (row.outcome, row.status, row.message)
        assert [r.outcome for r in back.rungs] == [r.outcome for r in row.rungs]
        assert back.equivalent_to == row.equivalent_to and back.generation == row.generation
    assert restored.rows[CE].status == "nan" and math.isnan(restored.rows[CE].last.scores[1])
    assert restored.rows["abs(y)"].status == "rejected" and restored.rows["neg(y)"].score == 0.5


KW = dict(evolution=Evolution(population_size=5, rejection_steps=50), cv=2, random_state=0, refit=False)


def same_results(a, b):
    assert list(a.cv_results_["program"]) == list(b.cv_results_["program"])
    np.testing.assert_array_equal(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"])
    assert str(a.best_loss_) == str(b.best_loss_)


def test_a_resumed_search_ends_as_an_uninterrupted_one(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    LossSearchCV(classifier(), generations=2, checkpoint=path, **KW).fit(X, y)
    assert json.loads(path.read_text())["generation"] == 2
    resumed = LossSearchCV(classifier(), generations=4, checkpoint=path, **KW).fit(X, y)
    whole = LossSearchCV(classifier(), generations=4, **KW).fit(X, y)
    same_results(resumed, whole)
    assert len(resumed.history_) == 4


def test_a_resumed_multi_metric_search_keeps_every_metric(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    kw = dict(KW, scoring={"acc": "accuracy", "nll": "neg_log_loss"}, refit="acc")
    LossSearchCV(classifier(), generations=1, checkpoint=path, **kw).fit(X, y)
    resumed = LossSearchCV(classifier(), generations=2, checkpoint=path, **kw).fit(X, y)
    whole = LossSearchCV(classifier(), generations=2, **kw).fit(X, y)
    same_results(resumed, whole)
    np.testing.assert_array_equal(resumed.cv_results_["mean_test_nll"], whole.cv_results_["mean_test_nll"])


def test_a_checkpoint_of_another_search_is_refused(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    LossSearchCV(classifier(), generations=1, checkpoint=path, **KW).fit(X, y)
    with pytest.raises(ValueError, match="other settings or data"):
        LossSearchCV(classifier(), generations=1, checkpoint=path, **{**KW, "random_state": 1}).fit(X, y)
    with pytest.raises(ValueError, match="other settings or data"):
        LossSearchCV(classifier(), generations=1, checkpoint=path, **KW).fit(X[::-1], y[::-1])
    with pytest.raises(ValueError, match="other settings or data"):  # skorch's repr does not show lr
        LossSearchCV(classifier(lr=0.05), generations=1, checkpoint=path, **KW).fit(X, y)


@pytest.mark.parametrize("where, message", [("missing_dir/search.json", "does not exist"), (".", "is a directory")])
def test_an_unwritable_checkpoint_path_is_refused_before_any_training(tmp_path, monkeypatch, where, message):
    from metaloss_sk import search, training

    def no_training(*args, **kwargs):
        raise AssertionError("a candidate trained before the checkpoint path was checked")

    for module in (search, training):
        monkeypatch.setattr(module, "build_net", no_training)
    X, y = iris()
    with pytest.raises(ValueError, match=f"checkpoint=.*{message}"):
        LossSearchCV(classifier(), generations=1, checkpoint=tmp_path / where, **KW).fit(X, y)


@pytest.mark.parametrize("case, message", [
    ("under_a_file", r"checkpoint='[^']*afile.txt/search.json': '[^']*afile.txt' is a file, not a folder"),
    ("denied", r"checkpoint='[^']*search.json' cannot be written: Permission denied in its folder"),
])
def test_an_unwritable_checkpoint_names_the_users_path_and_the_reason(tmp_path, monkeypatch, case, message):
    from metaloss_sk import search, training

    for module in (search, training):
        monkeypatch.setattr(module, "build_net", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "afile.txt").write_text("not a folder")
    path = tmp_path / "afile.txt" / "search.json"
    if case == "denied":  # what a folder of another user, or a read-only mount, does (root may write anywhere)
        path, real_open = tmp_path / "search.json", os.open

        def denied(name, *args, **kwargs):
            if os.path.dirname(os.fspath(name)) == str(tmp_path):
                raise PermissionError(13, "Permission denied", name)
            return real_open(name, *args, **kwargs)

        monkeypatch.setattr(os, "open", denied)
    X, y = iris()
    with pytest.raises(ValueError, match=message) as error:
        LossSearchCV(classifier(), generations=1, checkpoint=str(path), **KW).fit(X, y)
    assert ".tmp" not in str(error.value)


def test_a_corrupt_checkpoint_is_refused_with_its_path(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        LossSearchCV(classifier(), generations=1, checkpoint=path, **KW).fit(X, y)


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler
    from skorch import NeuralNetClassifier
    from metaloss_sk import Evolution, LossSearchCV
    from metaloss_sk.nets import MLP
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = NeuralNetClassifier(MLP, module__n_in=4, module__n_hidden=8, module__n_out=3, max_epochs=4,
                              lr=0.2, batch_size=32, train_split=None, verbose=0)
    LossSearchCV(net, generations=int(sys.argv[2]), checkpoint=sys.argv[1], cv=2, random_state=0,
                 evolution=Evolution(population_size=5, rejection_steps=50), refit=False).fit(X, y)
""")


@pytest.mark.slow
def test_a_search_killed_mid_generation_resumes_to_the_same_result(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path), "200"])
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and json.loads(path.read_text())["generation"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(path.read_text())["generation"]
    resumed = LossSearchCV(classifier(), generations=done + 2, checkpoint=path, **KW).fit(X, y)
    whole = LossSearchCV(classifier(), generations=done + 2, **KW).fit(X, y)
    same_results(resumed, whole)
