"""Long searches survive interrupts and kills; bad input gets clear errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import classifier, iris
from sklearn.datasets import load_diabetes
from skorch import NeuralNetClassifier, NeuralNetRegressor

import metaloss_sk.evaluator as evaluator_module
from metaloss_sk import Evolution, LossSearchCV
from metaloss_sk.filters import Probe
from metaloss_sk.nets import MLP

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


def test_ctrl_c_stops_with_the_results_so_far(monkeypatch):
    X, y = iris()
    real = evaluator_module.evaluate_candidates
    calls = {"generation": -1}  # the learning rate is tuned before the first generation

    def interrupt_in_generation_two(*args, **kwargs):
        if calls["generation"] >= 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real_call = evaluator_module.Evaluator.generation

    def track(self, population, generation, max_new=None):
        calls["generation"] = generation
        return real_call(self, population, generation, max_new)

    monkeypatch.setattr(evaluator_module, "evaluate_candidates", interrupt_in_generation_two)
    monkeypatch.setattr(evaluator_module.Evaluator, "generation", track)
    with pytest.warns(UserWarning, match="interrupted after") as record:
        search = LossSearchCV(classifier(), generations=10, n_jobs=1, **{**KW, "refit": True}).fit(X, y)
    assert 2 <= len(search.history_) < 10
    assert f"after {len(search.history_)} generation" in str(record[0].message)
    assert search.predict(X).shape == (len(X),)


class DiesInWorkers(MLP):
    """Kills the process it runs in, unless that is the main process."""

    def forward(self, x):
        import multiprocessing

        if multiprocessing.current_process().name != "MainProcess":
            os._exit(1)
        return super().forward(x)


@pytest.mark.slow
def test_a_dying_worker_ends_the_search_with_a_clear_error_and_the_checkpoint_intact(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    with pytest.raises(RuntimeError, match=r"worker died .* neg\(mul\(y, log\(yhat\)\)\)"):
        LossSearchCV(classifier(module=DiesInWorkers), generations=2, n_jobs=2, checkpoint=path, **KW).fit(X, y)
    assert not path.exists()  # no generation completed, and nothing half-written


def test_every_new_candidate_rejected_leaves_a_working_search(monkeypatch):
    def reject_all(self, losses, **kwargs):
        return [True for _ in losses]

    monkeypatch.setattr(Probe, "reject", reject_all)
    X, y = iris()
    search = LossSearchCV(classifier(), generations=3, **KW).fit(X, y)
    # The seeds (the known losses) are never rejected: the best of them is returned.
    assert str(search.best_loss_.program_) in [k["program"] for k in search.baseline_["known_losses"]]
    assert search.search_stats_["rejected"] > 0


def test_a_constant_loss_is_rejected_and_the_search_goes_on():
    X, y = iris()
    seeds = ["neg(mul(y, log(yhat)))", "mul(0.0, mul(y, yhat))"]
    search = LossSearchCV(classifier(), generations=1, seed_programs=seeds, **KW).fit(X, y)
    row = list(search.cv_results_["program"]).index("mul(0.0, mul(y, yhat))")
    assert search.cv_results_["status"][row] == "rejected"
    assert "no gradient" in search.cv_results_["message"][row]


def test_programs_at_the_maximum_height_train():
    X, y = iris()
    kw = dict(KW, evolution=Evolution(population_size=5, rejection_steps=50, max_height=4, init_depth=(4, 4)))
    search = LossSearchCV(classifier(), generations=3, **kw).fit(X, y)
    assert max(search.cv_results_["depth"]) <= 5  # repair may add one level to a program of height 4
    assert np.isfinite(search.best_score_)


def test_float64_input_is_cast_and_the_callers_array_untouched():
    X, y = iris()
    X64 = X.astype(np.float64)
    copy = X64.copy()
    search = LossSearchCV(classifier(), generations=1, **{**KW, "refit": True}).fit(X64, y)
    np.testing.assert_array_equal(X64, copy)
    assert search.predict(X64).shape == (len(X),)


@pytest.mark.parametrize("make, match", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y), "NaN"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), y), "infinity"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 3, np.nan, y)), "NaN"),
    (lambda X, y: (X[:-1], y), "inconsistent numbers of samples"),
    (lambda X, y: (X[:0], y[:0]), "0 sample"),
    (lambda X, y: (X[:1], y[:1]), r"1 sample\(s\)"),
    (lambda X, y: (X, np.zeros_like(y)), "single class"),
    (lambda X, y: (X[:, 0], y), "Expected 2D array"),
    (lambda X, y: (sp.csr_matrix(X), y), "[Ss]parse"),
    (lambda X, y: (X, None), "y is None"),
    (lambda X, y: (X, y + 0.5), "Unknown label type"),
])
def test_bad_input_gets_a_clear_error(make, match):
    X, y = make(*iris())
    with pytest.raises((ValueError, TypeError), match=match):
        LossSearchCV(classifier(), generations=1, **KW).fit(X, y)


def test_fit_parameters_are_refused_by_name_before_any_training(monkeypatch):
    monkeypatch.setattr(evaluator_module.Evaluator, "generation", lambda *a, **k: pytest.fail("trained"))
    X, y = iris()
    with pytest.raises(TypeError, match="sample_weight.*as a dict of arrays.*Weighted rows"):
        LossSearchCV(classifier(), generations=1, **KW).fit(X, y, sample_weight=np.ones(len(y)))


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_net_that_holds_out_a_validation_split_is_refused_before_any_training(monkeypatch, pipeline):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skorch.dataset import ValidSplit

    monkeypatch.setattr(evaluator_module.Evaluator, "generation", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(NeuralNetClassifier, "fit", lambda *a, **k: pytest.fail("trained"))
    net = classifier(train_split=ValidSplit(5))  # skorch's default
    X, y = iris()
    with pytest.raises(ValueError, match=r"train_split is .*ValidSplit.*pass train_split=None"):
        LossSearchCV(make_pipeline(StandardScaler(), net) if pipeline else net, generations=1, **KW).fit(X, y)


def test_an_unknown_scorer_is_named():
    X, y = iris()
    with pytest.raises(ValueError, match="no_such_scorer"):
        LossSearchCV(classifier(), generations=1, scoring="no_such_scorer", **KW).fit(X, y)


def test_two_dimensional_targets_for_a_single_output_regressor_are_refused():
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    regressor = NeuralNetRegressor(MLP, module__n_in=10, module__n_hidden=4, module__n_out=1, max_epochs=1,
                                   train_split=None, verbose=0)
    Y = np.stack([y, y], axis=1).astype(np.float32)
    with pytest.raises(ValueError, match=r"gives 1 output\(s\) per row, but y has 2 target column"):
        LossSearchCV(regressor, generations=1, **KW).fit(X, Y)


@pytest.mark.parametrize("task, n_out, match", [
    ("multiclass", 2, r"gives 2 output\(s\) per row, but y has 3 classes.*module__n_out=3"),
    ("multiclass", 5, r"gives 5 output\(s\) per row, but y has 3 classes.*module__n_out=3"),
    ("binary", 2, r"shape \(n,\) or \(n, 1\), got \(4, 2\)"),  # skorch's own check, already before training
    ("regression", 3, r"gives 3 output\(s\) per row, but y has 1 target column.*module__n_out=1"),
])
def test_a_module_whose_output_width_does_not_fit_the_classes_is_refused_before_training(
        monkeypatch, task, n_out, match):
    from skorch import NeuralNetBinaryClassifier

    monkeypatch.setattr(evaluator_module.Evaluator, "generation", lambda *a, **k: pytest.fail("trained"))
    X, y = iris()
    net = classifier(module__n_out=n_out)
    if task == "binary":
        y = (y == 0).astype(np.float32)
        net = NeuralNetBinaryClassifier(MLP, module__n_in=4, module__n_hidden=8, module__n_out=n_out,
                                        train_split=None, verbose=0)
    elif task == "regression":
        y = X[:, 0].copy()
        net = NeuralNetRegressor(MLP, module__n_in=4, module__n_hidden=8, module__n_out=n_out,
                                 train_split=None, verbose=0)
    with pytest.raises(ValueError, match=match):
        LossSearchCV(net, generations=1, **KW).fit(X, y)


def test_torch_tensors_are_accepted_as_input():
    X, y = iris()
    search = LossSearchCV(classifier(), generations=1, **KW).fit(torch.as_tensor(X), torch.as_tensor(y))
    assert np.isfinite(search.best_score_)
