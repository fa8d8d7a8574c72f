"""Plots and the results table of a fitted search, on matplotlib's Agg backend."""

import sys

import matplotlib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from metaloss_sk import Evolution, LossSearchCV, Schedule, SymbolicLoss
from metaloss_sk.nets import MLP
from metaloss_sk.plotting import plot_loss_shape, plot_pareto, plot_progress, results_frame

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

CE = "neg(mul(y, log(yhat)))"


@pytest.fixture(scope="module")
def search():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = NeuralNetClassifier(MLP, module__n_in=4, module__n_hidden=8, module__n_out=3, max_epochs=4, lr=0.2,
                              batch_size=32, train_split=None, verbose=0)
    return LossSearchCV(net, evolution=Evolution(population_size=4, tournament_size=2), generations=2, cv=2,
                        random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def laddered():
    """A search whose finalists trained longer than the other programs (rungs of 3, 6, 12 and 24 steps)."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = NeuralNetClassifier(MLP, module__n_in=4, module__n_hidden=8, module__n_out=3, max_epochs=8, lr=0.2,
                              batch_size=32, train_split=None, verbose=0)
    return LossSearchCV(net, evolution=Evolution(population_size=6, rejection_steps=50), generations=2, cv=2,
                        schedule=Schedule(min_resources=6, screening=3, factor=2, n_finalists=2), refit=False,
                        random_state=0, search_lr="net", seed_programs="usual").fit(X, y)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def saves(ax, tmp_path, name):
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_progress(search, tmp_path):
    ax = plot_progress(search)
    assert isinstance(ax, Axes)
    best, median = ax.lines
    n = len(search.history_)
    np.testing.assert_array_equal(best.get_xdata(), np.arange(n))
    np.testing.assert_allclose(best.get_ydata(), [h["best_score"] for h in search.history_])
    np.testing.assert_allclose(median.get_ydata(), [h["median_score"] for h in search.history_])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["best", "median"]
    saves(ax, tmp_path, "progress")


def test_plot_progress_draws_on_the_given_axes(search):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_progress(search, ax=right) is right
    assert not left.lines and len(right.lines) == 2


def test_plot_pareto(search, tmp_path):
    ax = plot_pareto(search)
    assert isinstance(ax, Axes)
    results = search.cv_results_
    finite = np.isfinite(results["iter0_mean_test_score"])  # every program trained reached rung 0
    everything, front = ax.collections[:2]
    assert len(everything.get_offsets()) == finite.sum()
    points = np.asarray(front.get_offsets())
    # The front improves strictly with length and ends at the best score.
    assert np.all(np.diff(points[:, 0]) > 0) and np.all(np.diff(points[:, 1]) > 0)
    assert points[-1, 1] == pytest.approx(np.nanmax(results["iter0_mean_test_score"]))
    # No program is at least as short and strictly better than a front point.
    lengths, scores = results["length"][finite], results["iter0_mean_test_score"][finite]
    for x, y in points:
        assert not np.any((lengths <= x) & (scores > y))
    assert len(ax.lines) == 1 and len(ax.texts) == len(points)
    saves(ax, tmp_path, "pareto")


def test_plot_pareto_shows_every_program_at_one_budget(laddered):
    results = laddered.cv_results_
    ok = np.isfinite(results["mean_test_score"])
    assert set(results["n_resources"][ok]) == {6, 24}  # cv_results_ mixes budgets: the winner's is longer
    ax = plot_pareto(laddered)
    everything = ax.collections[0]
    # Rung 1 (6 steps; every program was at chance after the 3 of the screening) is the highest all reached.
    assert results["iter"][ok].min() == 1 and laddered.n_resources_[1] == 6
    np.testing.assert_allclose(np.asarray(everything.get_offsets()),
                               np.column_stack([results["length"], results["iter1_mean_test_score"]])[ok])
    assert everything.get_label() == f"programs at 6 training steps ({ok.sum()})"
    assert ax.get_ylabel() == "mean CV score at 6 training steps"


def test_plot_loss_shape_of_cross_entropy_is_minus_log_p_for_the_true_class_and_zero_for_a_false_one(tmp_path):
    axes = plot_loss_shape(SymbolicLoss(CE), normalize=False)
    assert len(axes) == 2 and all(isinstance(ax, Axes) for ax in axes)
    (true, true_reference), (false, false_reference) = axes[0].lines, axes[1].lines
    p = np.asarray(true.get_xdata())
    assert p.min() > 0 and p.max() < 1
    np.testing.assert_allclose(true.get_ydata(), -np.log(p), rtol=1e-10)
    np.testing.assert_allclose(true_reference.get_ydata(), -np.log(p), rtol=1e-10)
    np.testing.assert_array_equal(false.get_ydata(), 0.0)
    assert true_reference.get_linestyle() == false_reference.get_linestyle() == "--"
    saves(axes[0], tmp_path, "loss_shape")


def test_plot_loss_shape_evaluates_each_class_term_with_coefficients():
    loss = SymbolicLoss("square(sub(y, yhat))", coefficients=[2.0, 1.0, 1.0])  # (2 (y - yhat))^2
    axes = plot_loss_shape([loss, SymbolicLoss(CE)], labels=["scaled squared error", "ce"], normalize=False)
    assert [len(ax.lines) for ax in axes] == [3, 3]
    p = np.asarray(axes[0].lines[0].get_xdata())
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), 4 * (1 - p) ** 2, rtol=1e-6)
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), 4 * p**2, rtol=1e-6)
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["scaled squared error", "ce", "cross-entropy"]


def test_plot_loss_shape_draws_on_the_given_axes_binary_and_search(search):
    fig, given = plt.subplots(1, 2)
    axes = plot_loss_shape(SymbolicLoss("square(sub(y, yhat))", task="binary"), axes=given, normalize=False)
    assert list(axes) == list(given)
    q = np.asarray(axes[1].lines[0].get_xdata())
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), q**2, rtol=1e-6)
    axes = plot_loss_shape(search)  # the best loss
    assert [len(ax.lines) for ax in axes] == [2, 2]


def test_plot_loss_shape_regression_draws_one_panel(tmp_path):
    (ax,) = plot_loss_shape([SymbolicLoss("abs(sub(y, yhat))", task="regression")], target=1.0, normalize=False)
    curve, reference = ax.lines
    r = np.asarray(curve.get_xdata())
    assert r.min() < 0 < r.max()
    np.testing.assert_allclose(curve.get_ydata(), np.abs(r), atol=1e-12)
    np.testing.assert_allclose(reference.get_ydata(), r**2, atol=1e-12)
    saves(ax, tmp_path, "loss_shape_regression")


def test_plot_loss_shape_scales_each_loss_by_one_span_over_both_panels(tmp_path):
    big = SymbolicLoss("square(sub(y, yhat))", coefficients=[40.0, 1.0, 1.0])  # about 0 to 1600
    axes = plot_loss_shape([big, SymbolicLoss(CE)])
    for line in axes[0].lines:
        values = np.asarray(line.get_ydata())
        assert values.min() == pytest.approx(0.0) and values.max() == pytest.approx(1.0)
    p = np.asarray(axes[0].lines[1].get_xdata())
    ce = -np.log(p)
    np.testing.assert_allclose(axes[0].lines[1].get_ydata(), (ce - ce.min()) / (ce.max() - ce.min()), rtol=1e-8)
    np.testing.assert_array_equal(axes[1].lines[1].get_ydata(), 0.0)  # cross-entropy's false-class term
    assert "scaled" in axes[0].get_ylabel()
    saves(axes[0], tmp_path, "loss_shape_scaled")


def test_plot_loss_shape_errors():
    with pytest.raises(ValueError, match="regression and classification"):
        plot_loss_shape([SymbolicLoss(CE), SymbolicLoss("square(sub(y, yhat))", task="regression")])
    with pytest.raises(ValueError, match="labels"):
        plot_loss_shape([SymbolicLoss(CE)], labels=["a", "b"])
    with pytest.raises(ValueError, match="2 Axes"):
        plot_loss_shape(SymbolicLoss(CE), axes=plt.subplots()[1])
    with pytest.raises(TypeError, match="SymbolicLoss"):
        plot_loss_shape([CE])


def test_results_frame(search):
    frame = results_frame(search)
    assert list(frame.columns) == ["program", "infix", "sympy", "length", "depth", "mean_test_score",
                                   "std_test_score", "generation"]
    assert len(frame) == len(search.hall_of_fame_)
    assert list(frame.index) == list(range(1, len(frame) + 1))
    assert frame["program"].iloc[0] == str(search.best_loss_.program_)
    assert frame["mean_test_score"].iloc[0] == pytest.approx(search.best_score_)
    assert frame["mean_test_score"].is_monotonic_decreasing
    assert frame["sympy"].iloc[0] == str(search.best_loss_.sympy())


def test_unfitted_search_is_refused(search):
    unfitted = LossSearchCV(search.estimator)
    for fn in (plot_progress, plot_pareto, results_frame):
        with pytest.raises(ValueError, match="fitted"):
            fn(unfitted)


def test_missing_matplotlib_says_how_to_install(monkeypatch, search):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_progress(search)
