"""LossSearchCV: the search, its results, and where scikit-learn users put it."""

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import bad_values, case_id, classifier, iris
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes, load_iris
from sklearn.metrics import f1_score, make_scorer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from skorch import NeuralNetBinaryClassifier, NeuralNetRegressor

import metaloss_sk.evaluator as evaluator_module
from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule, SymbolicLoss, parse
from metaloss_sk.filters import Probe
from metaloss_sk.nets import MLP

SMALL = dict(generations=2, cv=2, random_state=0, evolution=Evolution(population_size=5, rejection_steps=50))


@pytest.fixture(scope="module")
def fitted():
    X, y = iris()
    return LossSearchCV(classifier(), **SMALL).fit(X, y), X, y


def test_fit_sets_the_fitted_attributes(fitted):
    search, X, _ = fitted
    for name in ("best_loss_", "best_score_", "best_params_", "best_index_", "best_estimator_",
                 "cv_results_", "hall_of_fame_", "history_", "search_stats_", "classes_", "n_features_in_"):
        assert hasattr(search, name), name
    assert isinstance(search.best_loss_, SymbolicLoss)
    assert search.n_features_in_ == 4
    assert search.predict(X).shape == (len(X),)


def test_cv_results_has_one_row_per_distinct_program(fitted):
    search = fitted[0]
    results = search.cv_results_
    assert len(set(results["program"])) == len(results["program"])
    n = len(results["program"])
    for key in ("infix", "length", "depth", "generation", "split0_test_score", "split1_test_score",
                "mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time", "status", "params"):
        assert len(results[key]) == n, key
    assert results["rank_test_score"][search.best_index_] == 1
    assert search.best_score_ == pytest.approx(np.nanmax(results["mean_test_score"]))


def test_cross_entropy_is_seeded_and_never_beaten_by_a_worse_best(fitted):
    search = fitted[0]
    results = search.cv_results_
    ce = list(results["program"]).index("neg(mul(y, log(yhat)))")
    assert results["generation"][ce] == 0
    assert search.best_score_ >= results["mean_test_score"][ce]


def test_elitism_keeps_the_best_score_from_falling(fitted):
    best = [h["best_score"] for h in fitted[0].history_]
    assert best == sorted(best)


def test_best_params_put_the_found_loss_into_a_net(fitted):
    search, X, y = fitted
    net = classifier().set_params(**search.best_params_)
    net.fit(X, y)
    assert isinstance(net.criterion_, SymbolicLoss)
    assert str(net.criterion_.program_) == str(search.best_loss_.program_)


def test_same_random_state_gives_identical_results():
    X, y = iris()
    a = LossSearchCV(classifier(), **SMALL).fit(X, y).cv_results_
    b = LossSearchCV(classifier(), **SMALL).fit(X, y).cv_results_
    assert list(a["program"]) == list(b["program"])
    np.testing.assert_array_equal(a["mean_test_score"], b["mean_test_score"])


def test_results_do_not_depend_on_n_jobs():
    X, y = iris()
    a = LossSearchCV(classifier(), n_jobs=1, refit=False, **SMALL).fit(X, y).cv_results_
    b = LossSearchCV(classifier(), n_jobs=2, refit=False, **SMALL).fit(X, y).cv_results_
    assert list(a["program"]) == list(b["program"])
    np.testing.assert_array_equal(a["split0_test_score"], b["split0_test_score"])
    np.testing.assert_array_equal(a["split1_test_score"], b["split1_test_score"])


def test_a_diverging_candidate_is_recorded_and_the_search_goes_on():
    # Finite with a finite gradient on the probe rows, so only training can tell it diverges.
    X, y = iris()
    exploding = "neg(mul(mul(y, 1e+30), yhat))"
    search = LossSearchCV(classifier(), seed_programs=["neg(mul(y, log(yhat)))", exploding],
                          refit=False, **SMALL).fit(X, y)
    row = list(search.cv_results_["program"]).index(exploding)
    assert search.cv_results_["status"][row] == "nan"
    assert np.isnan(search.cv_results_["mean_test_score"][row])
    assert search.search_stats_["failures"] >= 1
    assert np.isfinite(search.best_score_)


def test_string_labels_map_back():
    X, y = iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    search = LossSearchCV(classifier(), **SMALL).fit(X, labels)
    assert set(search.predict(X)) <= set(labels)
    assert list(search.classes_) == list(labels[np.sort(np.unique(labels, return_index=True)[1])])
    assert 0 <= search.score(X, labels) <= 1
    np.testing.assert_allclose(search.predict_proba(X).sum(axis=1), 1, rtol=1e-5)


def test_binary_classifier():
    X, y = iris()
    X, y = X[y < 2], y[y < 2]
    net = NeuralNetBinaryClassifier(MLP, module__n_in=4, module__n_hidden=8, module__n_out=1,
                                    max_epochs=20, lr=0.1, batch_size=32, train_split=None, verbose=0)
    search = LossSearchCV(net, **SMALL).fit(X, y)
    assert search.best_loss_.task == "binary"
    assert search.score(X, y) > 0.5
    np.testing.assert_allclose(search.predict_proba(X).sum(axis=1), 1, rtol=1e-5)


def test_regressor_with_1d_targets():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    net = NeuralNetRegressor(MLP, module__n_in=10, module__n_hidden=8, module__n_out=1,
                             max_epochs=10, lr=0.05, batch_size=32, train_split=None, verbose=0)
    search = LossSearchCV(net, **SMALL).fit(X, y)
    assert "square(sub(y, yhat))" in list(search.cv_results_["program"])
    assert search.best_loss_.task == "regression"
    assert search.predict(X).shape == y.shape


TINY = dict(generations=1, cv=2, random_state=0, error_score="raise", baseline_lrs=None,
            evolution=Evolution(population_size=4))


@pytest.mark.parametrize("train_loop", ["fast", "skorch"])
@pytest.mark.parametrize("scoring", ["accuracy", "f1_macro", "neg_log_loss", "roc_auc_ovr",
                                     make_scorer(f1_score, average="micro")])
def test_any_classification_scorer(scoring, train_loop):
    # Scorers read the net's classes_, which skorch sets in net.fit: the fast loop must too.
    X, y = iris()
    search = LossSearchCV(classifier(), scoring=scoring, train_loop=train_loop, **TINY).fit(X, y)
    assert np.isfinite(search.best_score_)
    assert search.score(X, y) == pytest.approx(search.scorer_(search.best_estimator_, X, y))


@pytest.mark.parametrize("train_loop", ["fast", "skorch"])
@pytest.mark.parametrize("scoring", ["neg_mean_squared_error", "r2", "neg_mean_absolute_error"])
def test_any_regression_scorer(scoring, train_loop):
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = NeuralNetRegressor(MLP, module__n_in=10, module__n_hidden=8, module__n_out=1, max_epochs=3, lr=0.05,
                             batch_size=32, train_split=None, verbose=0)
    search = LossSearchCV(net, scoring=scoring, train_loop=train_loop, **TINY).fit(X, y.astype(np.float32))
    assert np.isfinite(search.best_score_)


def test_a_refit_callable_chooses_the_loss_as_in_grid_search():
    X, y = iris()
    ce = "neg(mul(y, log(yhat)))"
    search = LossSearchCV(classifier(), refit=lambda results: list(results["program"]).index(ce), **SMALL)
    search.fit(X, y)
    assert str(search.best_loss_.program_) == ce
    assert search.cv_results_["program"][search.best_index_] == ce
    assert search.best_score_ == search.cv_results_["mean_test_score"][search.best_index_]
    assert search.best_estimator_.criterion is search.best_loss_ or \
        str(search.best_estimator_.criterion) == str(search.best_loss_)
    with pytest.raises(ValueError, match="refit=.*returned 10000"):
        LossSearchCV(classifier(), refit=lambda results: 10000, **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="refit"):
        LossSearchCV(classifier(), refit="yes", **SMALL).fit(X, y)


def test_refit_with_the_simplest_within_one_se():
    from metaloss_sk import simplest_within_one_se

    X, y = iris()
    search = LossSearchCV(classifier(), refit=simplest_within_one_se, schedule=Schedule(n_finalists=4),
                          **SMALL).fit(X, y)
    results = search.cv_results_
    final = results["iter"] == results["iter"].max()
    assert final[search.best_index_]
    best = np.nanargmax(np.where(final, results["mean_test_score"], -np.inf))
    assert results["length"][search.best_index_] <= results["length"][best]


class _RecordingScaler(StandardScaler):
    """A StandardScaler that records how many rows every fit saw."""

    fits = []

    def fit(self, X, y=None, sample_weight=None):
        type(self).fits.append(len(X))
        return super().fit(X, y, sample_weight)


def test_a_pipeline_is_searched_with_its_steps_fitted_per_fold():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    X, y = load_iris(return_X_y=True, as_frame=True)
    X["size"] = np.where(X["sepal length (cm)"] > 5.8, "big", "small")
    columns = ColumnTransformer([("num", _RecordingScaler(), list(X.columns[:4])), ("cat", OneHotEncoder(), ["size"])])
    pipe = make_pipeline(columns, classifier(module__n_in=6))
    _RecordingScaler.fits.clear()
    search = LossSearchCV(pipe, evolution=Evolution(population_size=4), generations=1, cv=3, random_state=0,
                          baseline_lrs=None).fit(X, y)
    # Fitted on all rows (the rows the winner's final training sees), on each fold's training rows
    # only (no leakage across folds), and once more inside the refit Pipeline.
    assert _RecordingScaler.fits == [150, 100, 100, 100, 150]
    assert isinstance(search.best_estimator_, type(pipe))
    assert search.best_estimator_[-1].criterion is search.best_loss_ or \
        str(search.best_estimator_[-1].criterion) == str(search.best_loss_)
    assert search.n_features_in_ == 5 and list(search.feature_names_in_) == list(X.columns)
    assert set(search.predict(X.iloc[:20])) <= set(y) and 0 <= search.score(X, y) <= 1


def test_pipeline_with_scaler_and_float32_cast():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), FunctionTransformer(lambda a: a.astype(np.float32)),
                         LossSearchCV(classifier(), **SMALL))
    assert pipe.fit(X, y).score(X, y) > 0.3


def test_grid_search_over_the_search_parameters():
    X, y = iris()
    grid = GridSearchCV(LossSearchCV(classifier(), evolution=Evolution(population_size=4), generations=1, cv=2,
                                     random_state=0),
                        {"evolution__p_crossover": [0.5, 0.7]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["evolution__p_crossover"] in (0.5, 0.7)


def test_cross_val_score_of_the_search():
    X, y = iris()
    scores = cross_val_score(LossSearchCV(classifier(), evolution=Evolution(population_size=4), generations=1,
                                          cv=2, random_state=0), X, y, cv=2)
    assert scores.shape == (2,)


def test_grid_search_of_a_net_over_criteria_including_the_found_loss(fitted):
    search, X, y = fitted
    found = {k: [v] for k, v in search.best_loss_.as_params().items()}
    grid = GridSearchCV(classifier(), [{"criterion": [torch.nn.CrossEntropyLoss]}, found], cv=2)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 2


def test_found_loss_instance_trains_a_new_net(fitted):
    search, X, y = fitted
    net = classifier(criterion=search.best_loss_)
    assert net.fit(X, y).score(X, y) > 0.3


def test_clone_and_pickle(fitted):
    search, X, _ = fitted
    unfitted = clone(search)
    assert not hasattr(unfitted, "best_loss_")
    assert unfitted.get_params()["evolution__population_size"] == SMALL["evolution"].population_size
    restored = pickle.loads(pickle.dumps(search))
    np.testing.assert_array_equal(restored.predict(X), search.predict(X))
    assert str(restored.best_loss_) == str(search.best_loss_)


def test_verbose_prints_a_line_per_generation_and_zero_prints_nothing(capsys):
    X, y = iris()
    LossSearchCV(classifier(), verbose=0, **SMALL).fit(X, y)
    assert capsys.readouterr().out == ""
    LossSearchCV(classifier(), verbose=1, **SMALL).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("gen ") == SMALL["generations"]
    assert "best loss" in out


@pytest.mark.parametrize("stop", [dict(max_evaluations=3), dict(max_time=1e-6), dict(n_iter_no_change=1)])
def test_budget_controls_stop_the_search(stop):
    X, y = iris()
    search = LossSearchCV(classifier(), **{**SMALL, "generations": 6}, **stop).fit(X, y)
    assert len(search.history_) < 6
    if "max_evaluations" in stop:
        assert search.search_stats_["evaluations"] == 3


@pytest.mark.parametrize("params, match", [
    (dict(evolution=Evolution(population_size=1)), "population_size"),
    (dict(evolution=Evolution(tournament_size=10, population_size=5)), "tournament_size"),
    (dict(evolution=Evolution(p_crossover=0.9, p_subtree_mutation=0.2)), "exceeds 1"),
    (dict(evolution=Evolution(max_height=2)), "max_height"),
    (dict(evolution=Evolution(function_set=["add", "frobnicate"])), "frobnicate"),
    (dict(evolution=Evolution(p_point_mutation=1.5)), "p_point_mutation"),
    (dict(train_loop="turbo"), "train_loop"),
    (dict(seed_programs=["neg(y)"]), "both y and yhat"),
])
def test_invalid_parameters_raise_naming_the_parameter(params, match):
    X, y = iris()
    with pytest.raises(ValueError, match=match):
        LossSearchCV(classifier(), **params).fit(X, y)


@pytest.mark.slow
def test_dask_backend_gives_the_same_results_as_n_jobs_1():
    import joblib
    from distributed import Client, LocalCluster

    X, y = iris()
    local = LossSearchCV(classifier(), n_jobs=1, refit=False, **SMALL).fit(X, y).cv_results_
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        with joblib.parallel_config(backend="dask"):
            remote = LossSearchCV(classifier(), n_jobs=-1, refit=False, **SMALL).fit(X, y).cv_results_
    assert list(local["program"]) == list(remote["program"])
    np.testing.assert_array_equal(local["split0_test_score"], remote["split0_test_score"])
    np.testing.assert_array_equal(local["split1_test_score"], remote["split1_test_score"])


@pytest.mark.parametrize("local_search", [None, "all"])
def test_results_do_not_depend_on_how_candidates_are_grouped(local_search):
    X, y = iris()
    kw = dict(refit=False, local_search=local_search and LocalSearch(meta_steps=3), **SMALL)
    alone = LossSearchCV(classifier(), candidates_per_task=1, **kw).fit(X, y).cv_results_
    together = LossSearchCV(classifier(), candidates_per_task=8, **kw).fit(X, y).cv_results_
    assert list(alone["program"]) == list(together["program"])
    np.testing.assert_array_equal(alone["split0_test_score"], together["split0_test_score"])
    np.testing.assert_array_equal(alone["split1_test_score"], together["split1_test_score"])


LOCAL = LocalSearch(candidates="winners", meta_steps=5, top_k=2)


def test_fit_refine_rescores_the_best_programs_and_keeps_only_improvements():
    X, y = iris()
    search = LossSearchCV(classifier(), **SMALL).fit(X, y)
    before = search.best_score_
    search.fit_refine(X, y, LOCAL)
    assert len(search.refine_results_) == 2
    for r in search.refine_results_:
        assert len(r["fold_coefficients"]) == SMALL["cv"]
        assert all(c is not None and len(c) == len(parse(r["program"])) - 1 for c in r["fold_coefficients"])
        # Kept only beyond the margin: one standard error of the paired per-fold difference.
        assert r["kept"] == (r["difference"] > r["margin"] >= 0)
        assert r["difference"] == pytest.approx(r["score_after"] - r["score_before"])
        if r["kept"]:
            assert len(r["coefficients"]) == len(parse(r["program"])) - 1
    assert search.best_score_ >= before
    if any(r["kept"] and r["score_after"] == search.best_score_ for r in search.refine_results_):
        assert search.best_loss_.coefficients is not None
    assert search.best_estimator_.criterion_.program == search.best_loss_.program


def test_a_second_fit_starts_from_nothing_fitted_as_a_fresh_search():
    X, y = iris()
    search = LossSearchCV(classifier(), **SMALL).fit(X, y)
    search.fit_refine(X, y, LOCAL)
    assert search.refine_results_
    search.set_params(random_state=1).fit(X, y)
    fresh = LossSearchCV(classifier(), **{**SMALL, "random_state": 1}).fit(X, y)

    def fitted(s):
        return sorted(k for k in vars(s) if k.endswith("_") or k.startswith("_"))

    assert fitted(search) == fitted(fresh) and "refine_results_" not in fitted(search)
    for key in ("program", "status", "mean_test_score", "iter", "n_resources"):
        np.testing.assert_equal(search.cv_results_[key], fresh.cv_results_[key])
    np.testing.assert_equal(search.hall_of_fame_, fresh.hall_of_fame_)
    assert all("coefficients" not in entry for entry in search.hall_of_fame_)
    assert str(search.best_loss_) == str(fresh.best_loss_) and search.best_loss_.coefficients is None
    assert search.best_score_ == fresh.best_score_ and search.best_index_ == fresh.best_index_
    np.testing.assert_equal(search.baseline_, fresh.baseline_)
    assert (search._state.fold_seeds, search._state.refit_seed) == (fresh._state.fold_seeds, fresh._state.refit_seed)


def _same(a, b, where):
    """Assert ``a == b`` recursively, leaving out every timing (keys with "time" in them, and "elapsed")."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            if "time" not in str(key) and key != "elapsed":
                _same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype, where
        if a.dtype == object:
            _same(a.tolist(), b.tolist(), where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, SymbolicLoss):
        assert isinstance(b, SymbolicLoss) and str(a) == str(b), where
        _same(a.get_params(), b.get_params(), f"{where}.get_params()")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    elif isinstance(a, type) or a is None or isinstance(a, (str, bool, int, float, np.generic)):
        assert a == b, f"{where}: {a!r} != {b!r}"
    else:  # an object without equality (a scorer, a refit net): the same kind, with the same repr
        assert type(a) is type(b) and repr(a) == repr(b), where


def test_a_fit_after_fit_and_fit_refine_sets_every_attribute_as_a_fresh_fit():
    X, y = iris()
    search = LossSearchCV(classifier(), **SMALL).fit(X, y)
    search.fit_refine(X, y, LOCAL)
    search.set_params(random_state=1).fit(X, y)
    fresh = LossSearchCV(classifier(), **{**SMALL, "random_state": 1}).fit(X, y)

    def fitted(s):
        return sorted(k for k in vars(s) if k.endswith("_") and not k.startswith("_"))

    assert fitted(search) == fitted(fresh)
    assert {"best_loss_", "cv_results_", "hall_of_fame_", "history_", "baseline_", "search_stats_",
            "best_estimator_"} <= set(fitted(fresh)) and "refine_results_" not in fitted(search)
    for name in fitted(fresh):
        if name == "best_estimator_":  # refit with the same seed on the same rows: the same net
            assert str(search.best_estimator_.criterion) == str(fresh.best_estimator_.criterion)
            assert search.best_estimator_.lr == fresh.best_estimator_.lr
            np.testing.assert_array_equal(search.predict_proba(X), fresh.predict_proba(X))
        else:
            _same(getattr(search, name), getattr(fresh, name), name)


LSC_CASES = bad_values(LossSearchCV._parameter_constraints)


@pytest.mark.parametrize("name, value", LSC_CASES, ids=[case_id(c) for c in LSC_CASES])
def test_fit_refuses_a_bad_value_of_every_parameter_naming_it(monkeypatch, name, value):
    import metaloss_sk.search as search_module

    monkeypatch.setattr(search_module, "Evaluator", lambda *a, **k: pytest.fail("trained before the check"))
    X, y = iris()
    search = LossSearchCV(**{"estimator": classifier(), **SMALL, name: value})
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        search.fit(X, y)


def test_local_search_winners_runs_inside_fit():
    X, y = iris()
    search = LossSearchCV(classifier(), local_search=LOCAL, **SMALL).fit(X, y)
    assert len(search.refine_results_) == 2


def test_local_search_all_refines_every_candidate_and_the_winner():
    X, y = iris()
    search = LossSearchCV(classifier(), evolution=Evolution(population_size=3, tournament_size=2),
                          seed_programs="usual", margin=0,
                          generations=1, cv=2, random_state=0, local_search=LocalSearch(meta_steps=3)).fit(X, y)
    if str(search.best_loss_.program_) == "neg(mul(y, log(yhat)))":  # the seed enters without a local search
        assert search.best_loss_.coefficients is None
    else:
        assert len(search.best_loss_.coefficients) == len(search.best_loss_.program_) - 1


def test_search_stats_time_the_local_search_apart():
    X, y = iris()
    kw = dict(evolution=Evolution(population_size=3, tournament_size=2), generations=1, cv=2, random_state=0,
              refit=False, seed_programs="usual")
    evomal = LossSearchCV(classifier(), local_search=LocalSearch(meta_steps=3), **kw).fit(X, y)
    stats = evomal.search_stats_
    assert 0 < stats["local_search_time"] == pytest.approx(sum(h["local_search_time"] for h in evomal.history_))
    assert stats["local_search_time"] < stats["fit_time"] == pytest.approx(sum(h["fit_time"] for h in evomal.history_))
    assert LossSearchCV(classifier(), **kw).fit(X, y).search_stats_["local_search_time"] == 0


def test_local_search_results_do_not_depend_on_n_jobs():
    X, y = iris()
    kw = dict(local_search=LocalSearch(meta_steps=3), evolution=Evolution(population_size=3, tournament_size=2),
              generations=1, cv=2, random_state=0, refit=False)
    a = LossSearchCV(classifier(), n_jobs=1, **kw).fit(X, y)
    b = LossSearchCV(classifier(), n_jobs=2, **kw).fit(X, y)
    np.testing.assert_array_equal(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"])
    assert a.best_loss_.get_params() == b.best_loss_.get_params()


def test_multi_metric_scoring_selects_by_the_refit_metric_and_records_the_others():
    X, y = iris()
    search = LossSearchCV(classifier(), scoring=["accuracy", "f1_macro", "neg_log_loss"], refit="f1_macro",
                          **TINY).fit(X, y)
    results = search.cv_results_
    np.testing.assert_array_equal(results["mean_test_f1_macro"], results["mean_test_score"])
    for name in ("accuracy", "neg_log_loss"):
        scored = (results["iter"] == results["iter"].max()) & (results["status"] == "ok")
        assert scored.any() and np.isfinite(results[f"mean_test_{name}"][scored]).all()
        assert f"split1_test_{name}" in results and f"std_test_{name}" in results
    assert set(search.scorer_) == {"accuracy", "f1_macro", "neg_log_loss"}
    assert search.best_score_ == results["mean_test_f1_macro"][search.best_index_]
    assert search.score(X, y) == pytest.approx(search.scorer_["f1_macro"](search.best_estimator_, X, y))


@pytest.mark.parametrize("scoring, refit, message", [
    (["accuracy", "f1_macro"], True, "refit must name the metric"),
    (["accuracy", "f1_macro"], "recall", "refit must name the metric"),
    ("accuracy", "accuracy", "scoring is a single metric"),
    ({"a": "accuracy", 3: "f1_macro"}, "a", "dict of name to scorer"),
])
def test_multi_metric_scoring_needs_refit_to_name_a_metric(scoring, refit, message):
    X, y = iris()
    with pytest.raises(ValueError, match=message):
        LossSearchCV(classifier(), scoring=scoring, refit=refit, **TINY).fit(X, y)


def test_screening_is_a_rung_below_the_fitness_budget_and_keeps_results_independent_of_n_jobs():
    X, y = iris()
    kw = dict(SMALL, evolution=Evolution(population_size=6, rejection_steps=50),
              schedule=Schedule(screening=2, min_resources=6), refit=False, seed_programs="usual")
    a = LossSearchCV(classifier(), n_jobs=1, **kw).fit(X, y)
    b = LossSearchCV(classifier(), n_jobs=2, **kw).fit(X, y)
    assert a.n_resources_[:2] == [2, 6] and a.n_candidates_[1] == a.search_stats_["promoted"]
    assert a.search_stats_["promoted"] < a.search_stats_["evaluations"]
    results = a.cv_results_
    assert results["iter"][a.best_index_] >= 1  # the winner was trained at the fitness budget at least
    trained = results["status"] != "rejected"
    assert set(results["n_resources"][trained & (results["iter"] == 0)]) == {2} and 6 in results["n_resources"]
    np.testing.assert_array_equal(results["split0_test_score"], b.cv_results_["split0_test_score"])
    assert list(results["program"]) == list(b.cv_results_["program"])


def test_no_filter_or_training_runs_on_more_threads_than_one(monkeypatch):
    from metaloss_sk import evaluator, filters, training

    seen = []

    def spy(owner, name):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            seen.append((name, torch.get_num_threads()))
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapped)

    spy(filters.Probe, "reject")
    spy(filters.Probe, "fingerprints")
    spy(evaluator, "gradient_violations")
    spy(training.Trainer, "fit")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        X, y = iris()
        LossSearchCV(classifier(), n_jobs=1, refit=False, **SMALL).fit(X, y)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(threads)
    assert {name for name, _ in seen} == {"reject", "fingerprints", "gradient_violations", "fit"}
    assert {n for _, n in seen} == {1}


def test_a_seed_is_never_rejected_even_by_a_short_rejection_protocol():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=60, centers=3, random_state=0)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = classifier(module__n_in=2, max_epochs=2, lr=0.05)
    search = LossSearchCV(net, evolution=Evolution(population_size=6, rejection_steps=20), generations=1, cv=2,
                          random_state=0, refit=False).fit(X, y)
    ce = list(search.cv_results_["program"]).index("neg(mul(y, log(yhat)))")
    assert search.cv_results_["status"][ce] != "rejected"


KW = dict(evolution=Evolution(population_size=5, rejection_steps=50), cv=2, random_state=0, refit=False)


def test_ctrl_c_stops_with_the_results_so_far(monkeypatch):
    X, y = iris()
    real = evaluator_module.fit_and_score
    calls = {"generation": -1}  # the learning rate is tuned before the first generation

    def interrupt_in_generation_two(*args, **kwargs):
        if calls["generation"] >= 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real_call = evaluator_module.Evaluator.generation

    def track(self, population, generation, max_new=None):
        calls["generation"] = generation
        return real_call(self, population, generation, max_new)

    monkeypatch.setattr(evaluator_module, "fit_and_score", interrupt_in_generation_two)
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


def test_regression_targets_are_standardised_inside_the_search():
    X, y = load_diabetes(return_X_y=True)  # targets from 25 to 346, unscaled
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = NeuralNetRegressor(MLP, module__n_in=10, module__n_hidden=16, module__n_out=1, max_epochs=20,
                             lr=0.05, batch_size=32, train_split=None, verbose=0)
    search = LossSearchCV(net, evolution=Evolution(population_size=4, rejection_steps=50), generations=1, cv=2,
                          random_state=0, baseline_lrs=None).fit(X, y)
    assert isinstance(search.best_estimator_, TransformedTargetRegressor)
    assert search.best_score_ > 0.2 and search.score(X, y) > 0.2
    assert abs(search.predict(X).mean() - y.mean()) < 0.2 * y.std()


@pytest.mark.parametrize("kw, message", [(dict(margin="sd"), "margin must be"), (dict(margin=-0.01), "margin must be"),
                                         (dict(seed_programs="zoo"), "seed_programs must be one of 'auto', 'usual'")])
def test_bad_margin_or_seed_programs_are_refused_naming_the_parameter(kw, message):
    X, y = iris()
    with pytest.raises(ValueError, match=message):
        LossSearchCV(classifier(), **{**KW, **kw}).fit(X, y)
