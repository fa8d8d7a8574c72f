"""SymbolicLoss: the interpreter on tensors, task and link logic, skorch integration, round trips."""

import copy
import pickle

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from torch import nn
from torch.nn import functional as F

from metaloss_sk import SymbolicLoss
from metaloss_sk.nets import MLP
from metaloss_sk.primitives import EVOMAL_FUNCTION_SET, PRIMITIVES
from metaloss_sk.program import SearchSpace

CE = "neg(mul(y, log(yhat)))"
MSE = "square(sub(y, yhat))"


def _logits(n=8, c=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(n, c, generator=g, dtype=dtype)).requires_grad_()


def _value_and_grad(loss, y_pred, y_true):
    value = loss(y_pred, y_true)
    (grad,) = torch.autograd.grad(value, y_pred)
    return value.detach(), grad


def _assert_same_loss(loss, reference, y_pred, y_true, reference_args=None):
    value, grad = _value_and_grad(loss, y_pred, y_true)
    ref_value, ref_grad = _value_and_grad(reference, *(reference_args or (y_pred, y_true)))
    torch.testing.assert_close(value, ref_value, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300].astype(np.int64)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y.astype(np.float32)


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    y = StandardScaler().fit_transform(y.reshape(-1, 1)).astype(np.float32)
    return X, y


def _classifier(criterion, **kwargs):
    return NeuralNetClassifier(
        MLP, module__n_hidden=16, criterion=criterion, max_epochs=3, lr=0.2, batch_size=64, train_split=None,
        verbose=0, **kwargs,
    )


def _binary_classifier(criterion, **kwargs):
    return NeuralNetBinaryClassifier(
        MLP, module__n_in=30, module__n_hidden=16, module__n_out=1, criterion=criterion, max_epochs=3, lr=0.1,
        batch_size=64, train_split=None, verbose=0, **kwargs,
    )


def _regressor(criterion, **kwargs):
    return NeuralNetRegressor(
        MLP, module__n_in=10, module__n_hidden=16, module__n_out=1, criterion=criterion, max_epochs=3, lr=0.05,
        batch_size=64, train_split=None, verbose=0, **kwargs,
    )


def _fit(net, X, y, seed=0):
    torch.manual_seed(seed)
    return net.fit(X, y)


# ---------------------------------------------------------------- agreement with torch's losses


def test_default_program_is_cross_entropy():
    assert SymbolicLoss().program == CE


def test_cross_entropy_program_matches_cross_entropy_loss():
    logits, target = _logits(), torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    _assert_same_loss(SymbolicLoss(CE), nn.CrossEntropyLoss(), logits, target)


def test_cross_entropy_program_matches_cross_entropy_loss_on_probability_targets():
    logits = _logits()
    target = torch.softmax(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    _assert_same_loss(SymbolicLoss(CE), nn.CrossEntropyLoss(), logits, target)


def test_cross_entropy_program_matches_in_float64():
    logits, target = _logits(dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    _assert_same_loss(SymbolicLoss(CE), nn.CrossEntropyLoss(), logits, target)


@pytest.mark.parametrize("pred_shape", [(8,), (8, 1)])
def test_cross_entropy_program_with_binary_task_matches_bce_with_logits(pred_shape):
    logits = _logits(c=1).detach().reshape(pred_shape).requires_grad_()
    target = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.float32)
    _assert_same_loss(
        SymbolicLoss(CE, task="binary"), nn.BCEWithLogitsLoss(), logits, target,
        reference_args=(logits, target.reshape(pred_shape)),
    )


def test_binary_task_is_accurate_for_confidently_wrong_logits():
    # In float32 1 - sigmoid(16) keeps one significant bit; sigmoid(-16) is exact.
    logits, target = torch.tensor([16.0, -16.0]), torch.tensor([0.0, 1.0])
    value = SymbolicLoss(CE, task="binary")(logits, target)
    assert value.item() == pytest.approx(nn.BCEWithLogitsLoss()(logits, target).item(), rel=1e-6)


def test_protected_log_caps_the_loss_of_a_sample_at_minus_log_1e_7():
    value = SymbolicLoss(CE, task="binary")(torch.tensor([40.0]), torch.tensor([0.0]))
    assert value.item() == pytest.approx(-np.log(1e-7), rel=1e-6)


@pytest.mark.parametrize(
    "pred_shape, target_shape",
    [((8, 1), (8, 1)), ((8, 1), (8,)), ((8,), (8,)), ((8,), (8, 1))],
)
def test_squared_error_program_matches_mse_loss(pred_shape, target_shape):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(pred_shape, generator=g).requires_grad_()
    target = torch.randn(target_shape, generator=g)
    _assert_same_loss(
        SymbolicLoss(MSE, task="regression"), nn.MSELoss(), pred, target,
        reference_args=(pred, target.reshape(pred_shape)),
    )


def test_squared_error_program_matches_mse_loss_for_several_outputs():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(8, 3, generator=g).requires_grad_(), torch.randn(8, 3, generator=g)
    _assert_same_loss(SymbolicLoss(MSE, task="regression"), nn.MSELoss(), pred, target)


def test_probabilities_link_applies_the_program_to_the_outputs_as_given():
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    loss = SymbolicLoss(CE, link="probabilities")
    expected = -(np.log(0.8) + np.log(0.6)) / 2
    assert loss(probs, torch.tensor([1, 0])).item() == pytest.approx(expected, rel=1e-6)


def test_binary_probabilities_link_matches_bce_loss():
    probs = torch.tensor([0.1, 0.7, 0.9, 0.4], requires_grad=True)
    target = torch.tensor([0.0, 1.0, 0.0, 1.0])
    _assert_same_loss(SymbolicLoss(CE, task="binary", link="probabilities"), nn.BCELoss(), probs, target)


def test_loss_sums_over_classes_and_averages_over_the_batch():
    loss = SymbolicLoss("mul(y, yhat)", link="probabilities")
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    # Only the true class contributes (y is one-hot): mean of 0.8, 0.6, 0.5.
    assert loss(probs, torch.tensor([1, 0, 1])).item() == pytest.approx((0.8 + 0.6 + 0.5) / 3)


def test_constant_term_counts_once_per_class():
    loss = SymbolicLoss("add(yhat, 1.0)", link="probabilities")
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    assert loss(probs, torch.tensor([1, 0])).item() == pytest.approx(1.0 + 2.0)


# ---------------------------------------------------------------- errors


def test_regression_rejects_a_mismatched_target_shape_saying_what_it_expected():
    with pytest.raises(ValueError, match=r"expects targets shaped like the predictions \(8, 2\).*got \(8,\)"):
        SymbolicLoss(MSE, task="regression")(torch.zeros(8, 2), torch.zeros(8))


def test_multiclass_rejects_float_class_indices():
    with pytest.raises(TypeError, match="integer class indices, got torch.float32"):
        SymbolicLoss(CE)(torch.zeros(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]))


def test_multiclass_rejects_boolean_targets():
    with pytest.raises(TypeError, match="integer class indices, got torch.bool"):
        SymbolicLoss(CE)(torch.zeros(2, 2), torch.tensor([True, False]))


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_integer_predictions_are_rejected(task):
    with pytest.raises(TypeError, match="floating-point tensor, got torch.int64"):
        SymbolicLoss(CE, task=task)(torch.zeros(4, 1, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))


def test_non_tensor_predictions_are_rejected():
    with pytest.raises(TypeError, match="floating-point tensor"):
        SymbolicLoss(CE)(np.zeros((4, 3)), torch.zeros(4, dtype=torch.int64))


def test_multiclass_rejects_one_dimensional_predictions():
    with pytest.raises(ValueError, match=r"\(n_samples, n_classes\), got \(4,\).*task='binary'"):
        SymbolicLoss(CE)(torch.zeros(4), torch.zeros(4, dtype=torch.int64))


def test_multiclass_rejects_a_wrong_number_of_targets():
    with pytest.raises(ValueError, match=r"targets of shape \(4,\).*got \(3,\)"):
        SymbolicLoss(CE)(torch.zeros(4, 3), torch.zeros(3, dtype=torch.int64))


def test_binary_rejects_several_outputs():
    with pytest.raises(ValueError, match=r"one output per sample.*got \(4, 2\).*task='multiclass'"):
        SymbolicLoss(CE, task="binary")(torch.zeros(4, 2), torch.zeros(4))


def test_binary_rejects_a_wrong_number_of_targets():
    with pytest.raises(ValueError, match=r"expects 4 targets, got shape \(5,\)"):
        SymbolicLoss(CE, task="binary")(torch.zeros(4), torch.zeros(5))


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="task='ranking' is not supported"):
        SymbolicLoss(CE, task="ranking")


@pytest.mark.parametrize("task, link", [("multiclass", "sigmoid"), ("binary", "softmax"), ("regression", "softmax")])
def test_link_that_does_not_fit_the_task_is_rejected(task, link):
    with pytest.raises(ValueError, match=f"link='{link}' does not fit task='{task}'"):
        SymbolicLoss(CE, task=task, link=link)


def test_malformed_program_is_rejected_at_construction():
    with pytest.raises(ValueError, match="unknown primitive"):
        SymbolicLoss("__import__(y)")


def test_coefficients_must_match_the_number_of_edges():
    with pytest.raises(ValueError, match="coefficients has 3 values.*4 edges"):
        SymbolicLoss(CE, coefficients=[1.0, 1.0, 1.0])


def test_coefficients_must_be_finite():
    with pytest.raises(ValueError, match="finite"):
        SymbolicLoss(CE, coefficients=[1.0, float("nan"), 1.0, 1.0])


# ---------------------------------------------------------------- classes skorch dispatches on


@pytest.mark.parametrize(
    "task, link, base",
    [
        ("multiclass", "auto", nn.CrossEntropyLoss),
        ("binary", "auto", nn.BCEWithLogitsLoss),
        ("binary", "probabilities", nn.BCELoss),
    ],
)
def test_loss_is_an_instance_of_the_torch_loss_skorch_dispatches_on(task, link, base):
    loss = SymbolicLoss(CE, task=task, link=link)
    assert isinstance(loss, SymbolicLoss) and isinstance(loss, base)


@pytest.mark.parametrize("task, link", [("regression", "auto"), ("multiclass", "probabilities")])
def test_loss_without_a_logit_link_is_no_torch_loss(task, link):
    loss = SymbolicLoss(CE, task=task, link=link)
    assert type(loss) is SymbolicLoss and not isinstance(loss, nn.modules.loss._Loss)


def test_constructing_a_subclass_for_another_task_gives_the_right_class():
    softmax_class = type(SymbolicLoss(CE))
    loss = softmax_class(MSE, task="regression")
    assert type(loss) is SymbolicLoss and loss.task == "regression"


# ---------------------------------------------------------------- coefficients


def test_coefficients_are_a_float32_buffer_not_a_parameter():
    loss = SymbolicLoss(CE, coefficients=[1, 1, 1, 1])
    assert dict(loss.named_buffers())["coefficients"].dtype == torch.float32
    assert list(loss.parameters()) == []


def test_coefficient_scales_its_edge():
    logits, target = _logits(), torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    doubled = SymbolicLoss(CE, coefficients=[2.0, 1.0, 1.0, 1.0])(logits, target)
    assert doubled.item() == pytest.approx(2 * SymbolicLoss(CE)(logits, target).item(), rel=1e-6)


def test_changing_the_coefficients_in_place_changes_the_loss():
    # The loss keeps its program's evaluator (constant subtrees computed once) until the
    # coefficients change, in place (load_state_dict) or by a new buffer (.to).
    text = "add(neg(mul(y, log(yhat))), tanh(1.0))"
    loss = SymbolicLoss(text, coefficients=[1.0] * 7)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    before = loss(logits, target)
    loss.load_state_dict({"coefficients": torch.full((7,), 2.0)})
    torch.testing.assert_close(loss(logits, target), SymbolicLoss(text, coefficients=[2.0] * 7)(logits, target))
    loss.coefficients = torch.ones(7)
    torch.testing.assert_close(loss(logits, target), before)
    assert pickle.loads(pickle.dumps(loss))(logits, target) == before


def test_with_coefficients_gives_a_copy_with_other_coefficients():
    loss = SymbolicLoss(MSE, task="regression")
    scaled = loss.with_coefficients([0.5, 1.0, 1.0])
    assert scaled.get_params() == {"program": MSE, "task": "regression", "link": "auto",
                                   "coefficients": [0.5, 1.0, 1.0]}
    assert loss.coefficients is None
    assert scaled.with_coefficients(None).coefficients is None


def test_training_a_net_leaves_coefficients_unchanged(digits):
    coefficients = [1.0, 0.5, 1.0, 2.0]
    net = _fit(_classifier(SymbolicLoss(CE, coefficients=coefficients)), *digits)
    assert net.criterion_.coefficients.tolist() == coefficients
    assert list(net.criterion_.parameters()) == []


# ---------------------------------------------------------------- skorch integration


def test_trains_a_classifier_given_the_class_and_criterion_settings(digits):
    net = _fit(_classifier(SymbolicLoss, criterion__program=CE, criterion__task="multiclass"), *digits)
    assert isinstance(net.criterion_, SymbolicLoss) and net.criterion_.program == CE
    losses = net.history[:, "train_loss"]
    assert losses[-1] < losses[0]


def test_trains_a_classifier_given_an_instance(digits):
    net = _fit(_classifier(SymbolicLoss(CE)), *digits)
    losses = net.history[:, "train_loss"]
    assert losses[-1] < losses[0]


def test_classifier_trains_exactly_as_with_cross_entropy_loss(digits):
    symbolic = _fit(_classifier(SymbolicLoss(CE)), *digits).history[:, "train_loss"]
    reference = _fit(_classifier(nn.CrossEntropyLoss), *digits).history[:, "train_loss"]
    np.testing.assert_allclose(symbolic, reference, rtol=1e-4)


def test_classifier_predict_proba_gives_probabilities(digits):
    X, y = digits
    net = _fit(_classifier(SymbolicLoss(CE)), X, y)
    proba = net.predict_proba(X)
    assert proba.shape == (len(X), 10) and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(net.predict(X), proba.argmax(axis=1))


def test_trains_a_binary_classifier_and_predicts_probabilities(breast_cancer):
    X, y = breast_cancer
    net = _fit(_binary_classifier(SymbolicLoss, criterion__program=CE, criterion__task="binary"), X, y)
    proba = net.predict_proba(X)
    assert proba.shape == (len(X), 2) and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(proba[:, 1], torch.sigmoid(net.forward(X).reshape(-1)).numpy(), rtol=1e-5)
    assert net.history[-1, "train_loss"] < net.history[0, "train_loss"]


def test_binary_classifier_trains_exactly_as_with_bce_with_logits_loss(breast_cancer):
    symbolic = _fit(_binary_classifier(SymbolicLoss(CE, task="binary")), *breast_cancer)
    reference = _fit(_binary_classifier(nn.BCEWithLogitsLoss), *breast_cancer)
    np.testing.assert_allclose(symbolic.history[:, "train_loss"], reference.history[:, "train_loss"], rtol=1e-4)


def test_trains_a_regressor(diabetes):
    net = _fit(_regressor(SymbolicLoss(MSE, task="regression")), *diabetes)
    reference = _fit(_regressor(nn.MSELoss), *diabetes)
    np.testing.assert_allclose(net.history[:, "train_loss"], reference.history[:, "train_loss"], rtol=1e-4)
    assert net.history[-1, "train_loss"] < net.history[0, "train_loss"]


def test_trains_a_regressor_given_the_class_and_criterion_settings(diabetes):
    net = _fit(_regressor(SymbolicLoss, criterion__program=MSE, criterion__task="regression"), *diabetes)
    assert net.criterion_.task == "regression"
    assert net.predict(diabetes[0]).shape == (len(diabetes[0]), 1)


def test_fitted_net_with_the_loss_pickles(digits):
    X, y = digits
    net = _fit(_classifier(SymbolicLoss(CE, coefficients=[1.0, 1.0, 1.0, 1.0])), X, y)
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_allclose(again.predict_proba(X), net.predict_proba(X))
    assert repr(again.criterion_) == repr(net.criterion_)


# ---------------------------------------------------------------- round trips and exports


LOSSES = [
    SymbolicLoss(CE),
    SymbolicLoss(CE, coefficients=[0.3, 1.0, -2.0, 0.125]),
    SymbolicLoss(CE, task="binary"),
    SymbolicLoss(CE, task="binary", link="probabilities"),
    SymbolicLoss(MSE, task="regression", coefficients=[1.5, 1.0, 1.0]),
]
LOSS_IDS = ["ce", "ce-coefficients", "binary", "binary-probabilities", "mse-coefficients"]


def _same_loss(a, b):
    return type(a) is type(b) and repr(a) == repr(b) and a.get_params() == b.get_params()


def test_repr_shows_the_constructor_arguments():
    assert repr(SymbolicLoss(CE)) == f"SymbolicLoss(program={CE!r}, task='multiclass', link='auto')"
    assert repr(SymbolicLoss(MSE, task="regression", coefficients=[0.5, 1, 1])) == (
        f"SymbolicLoss(program={MSE!r}, task='regression', link='auto', coefficients=[0.5, 1.0, 1.0])"
    )


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_repr_recreates_the_loss(loss):
    assert _same_loss(eval(repr(loss), {"SymbolicLoss": SymbolicLoss}), loss)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_pickle_recreates_the_loss(loss):
    assert _same_loss(pickle.loads(pickle.dumps(loss)), loss)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_deepcopy_recreates_the_loss(loss):
    again = copy.deepcopy(loss)
    assert _same_loss(again, loss)
    assert again.coefficients is None or again.coefficients is not loss.coefficients


def test_copies_compute_the_same_loss():
    loss = LOSSES[1]
    logits, target = _logits(), torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    for again in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
        assert again(logits, target).item() == loss(logits, target).item()


@pytest.mark.parametrize("coefficients", [None, [0.3, 1.0, -2.0, 0.125]], ids=["plain", "coefficients"])
def test_clone_of_a_net_holding_an_instance_copies_the_loss(digits, coefficients):
    net = _classifier(SymbolicLoss(CE, coefficients=coefficients))
    cloned = clone(net)
    assert cloned.criterion is not net.criterion and _same_loss(cloned.criterion, net.criterion)
    _fit(cloned, *digits)
    assert _same_loss(cloned.criterion_, net.criterion)


@pytest.mark.parametrize("coefficients", [None, [0.3, 1.0, -2.0, 0.125]], ids=["plain", "coefficients"])
def test_clone_of_a_net_holding_the_class_keeps_the_criterion_settings(digits, coefficients):
    net = _classifier(SymbolicLoss, criterion__program=CE, criterion__coefficients=coefficients)
    _fit(cloned := clone(net), *digits)
    assert _same_loss(cloned.criterion_, SymbolicLoss(CE, coefficients=coefficients))


def test_clone_of_a_loss_is_a_fresh_equal_loss():
    loss = LOSSES[1]
    again = clone(loss)
    assert again is not loss and _same_loss(again, loss)


def test_get_params_accepts_deep_like_an_estimator():
    loss = SymbolicLoss(CE, coefficients=[0.5, 1.0, 1.0, 1.0])
    assert loss.get_params(deep=False) == loss.get_params(deep=True) == loss.get_params()


def test_str_is_the_readable_infix_form():
    assert str(SymbolicLoss(CE)) == "-(y * log(yhat))"


def test_sympy_export_of_cross_entropy():
    y, yhat = sympy.Symbol("y", real=True), sympy.Symbol("yhat", positive=True)
    assert SymbolicLoss(CE).sympy() == -y * sympy.log(yhat)


def test_latex_export_of_cross_entropy():
    assert SymbolicLoss(CE).latex() == r"- y \log{\left(\hat{y} \right)}"


def test_regression_sympy_keeps_yhat_real():
    y, yhat = sympy.Symbol("y", real=True), sympy.Symbol("yhat", real=True)
    assert SymbolicLoss(MSE, task="regression").sympy() == (y - yhat) ** 2


def test_infix_shows_the_coefficients():
    loss = SymbolicLoss(CE, coefficients=[0.3, 1.0, -2.5, 0.125])
    assert loss.infix() == str(loss) == "-0.3*(y * -2.5*log(0.125*yhat))"  # the coefficient 1 is left out


def test_sympy_export_includes_the_coefficients():
    loss = SymbolicLoss(CE, coefficients=[0.3, 1.0, -2.5, 0.125])
    y, yhat = sorted(loss.sympy().free_symbols, key=str)
    expected = loss.program_.evaluate(torch.tensor(1.0), torch.tensor(0.5), loss.coefficients)
    assert float(loss.sympy().subs({y: 1.0, yhat: 0.5})) == pytest.approx(expected.item(), rel=1e-6)


def test_latex_export_shows_the_coefficients():
    # sympy folds the product 0.3 * 1 * -2.5 of the outer coefficients into -0.75.
    latex = SymbolicLoss(CE, coefficients=[0.3, 1.0, -2.5, 0.125]).latex()
    assert latex == r"0.75 y \log{\left(0.125 \hat{y} \right)}"


# ---------------------------------------------------------------- property: finite values and gradients


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    function_set=st.sampled_from([EVOMAL_FUNCTION_SET, tuple(PRIMITIVES)]),
    scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]),
    n_classes=st.integers(2, 5),
)
def test_random_valid_program_gives_finite_loss_and_gradients_on_random_logits(
    seed, function_set, scale, n_classes,
):
    rs = np.random.RandomState(seed)
    space = SearchSpace(function_set)
    program = space.repair(space.random_program(rs), rs)
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(16, n_classes, generator=g)).requires_grad_()
    target = torch.randint(n_classes, (16,), generator=g)
    value, grad = _value_and_grad(SymbolicLoss(str(program)), logits, target)
    assert torch.isfinite(value), program
    assert torch.isfinite(grad).all(), program


def test_symbolic_loss_weights_rows():
    torch.manual_seed(0)
    logits, target, w = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), torch.rand(6)
    loss = SymbolicLoss()
    expected = (F.cross_entropy(logits, target, reduction="none") * w).mean()
    torch.testing.assert_close(loss(logits, target, sample_weight=w), expected)
    torch.testing.assert_close(loss(logits, target, sample_weight=torch.ones(6)), loss(logits, target))
    mse = SymbolicLoss("square(sub(y, yhat))", task="regression")
    out, t = torch.randn(6, 2), torch.randn(6, 2)
    torch.testing.assert_close(mse(out, t, sample_weight=w), (((out - t) ** 2).mean(1) * w).mean())
    with pytest.raises(ValueError, match="one weight per row of the batch \\(6\\)"):
        loss(logits, target, sample_weight=torch.ones(5))
