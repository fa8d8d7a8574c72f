"""Specification of the local search (EvoMAL's coefficient learning)."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from metaloss_sk import SymbolicLoss
from metaloss_sk.batched_unroll import unroll_plan
from metaloss_sk.optim import inner_optimizer
from metaloss_sk.unrolled import (
    LearnedCoefficients,
    _task_loss,
    _unrolled_objectives,
    initial_coefficients,
    learn_coefficients,
    learn_coefficients_group,
    meta_objective,
)

CROSS_ENTROPY = "neg(mul(y, log(yhat)))"


class MLP(nn.Module):
    def __init__(self, n_in=5, n_hidden=16, n_out=3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))

    def forward(self, x):
        return self.net(x)


class SoftmaxLinear(nn.Module):
    """Outputs probabilities, for ``link="probabilities"``."""

    def __init__(self, n_in=4, n_out=3):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return torch.softmax(self.fc(x), dim=-1)


def blobs(n=240, n_features=5, n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(n_classes, n_features, generator=g)
    y = torch.randint(n_classes, (n,), generator=g)
    X = centers[y] + torch.randn(n, n_features, generator=g)
    split = 2 * n // 3
    return X[:split], y[:split], X[split:], y[split:]


@pytest.fixture(scope="module")
def data():
    return blobs()


#: These networks are tiny: on a busy machine, spinning OpenMP workers make multi-threaded tiny kernels many
#: times slower, never faster.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_initial_coefficients_are_near_one_one_per_edge_and_seeded():
    c = initial_coefficients(CROSS_ENTROPY, random_state=0)
    assert c.shape == (4,)
    assert np.all(np.abs(c - 1) < 0.01) and np.any(c != 1)
    np.testing.assert_array_equal(c, initial_coefficients(CROSS_ENTROPY, random_state=0))
    assert initial_coefficients(SymbolicLoss(), random_state=0).shape == (4,)


# --- the meta-gradient ---------------------------------------------------------------------------

def _tiny_problem(task, link="auto"):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    if task == "multiclass":
        y = torch.randint(3, (3, 6), generator=g)
        module = SoftmaxLinear(4, 3) if link == "probabilities" else nn.Linear(4, 3)
    elif task == "binary":
        y = torch.randint(2, (3, 6), generator=g).double()
        module = nn.Linear(4, 1)
    else:
        y = torch.randn(3, 6, generator=g, dtype=torch.float64)
        module = nn.Linear(4, 1)
    torch.manual_seed(0)
    module = module.double()
    return module, list(zip(X[:2], y[:2])), (X[2], y[2])


@pytest.mark.parametrize("task, link, program, optimizer, params", [
    ("multiclass", "auto", "add(neg(mul(y, log(yhat))), mul(0.5, square(sub(y, yhat))))",
     torch.optim.SGD, {"lr": 0.3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("multiclass", "auto", CROSS_ENTROPY, torch.optim.Adam, {"lr": 0.05, "weight_decay": 0.01}),
    ("multiclass", "probabilities", CROSS_ENTROPY, torch.optim.AdamW, {"lr": 0.05, "amsgrad": True}),
    ("binary", "auto", "sub(tanh(sub(y, yhat)), mul(y, log(yhat)))", torch.optim.SGD,
     {"lr": 0.5, "momentum": 0.5, "dampening": 0.1}),
    ("regression", "auto", "add(square(sub(y, yhat)), mul(0.1, tanh(sub(yhat, y))))",
     torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
])
def test_meta_gradient_matches_central_finite_differences(task, link, program, optimizer, params):
    loss = SymbolicLoss(program, task=task, link=link)
    module, train_batches, valid_batch = _tiny_problem(task, link)
    c = torch.tensor(initial_coefficients(loss, random_state=0) + np.linspace(-0.2, 0.2, len(loss.program_) - 1),
                     dtype=torch.float64, requires_grad=True)

    def objective(coefficients):
        return meta_objective(loss, coefficients, module, train_batches, valid_batch,
                              optimizer=optimizer, optimizer_params=params)

    (analytic,) = torch.autograd.grad(objective(c), c)
    h = 1e-6
    numeric = torch.stack([
        (objective(c.detach() + h * e) - objective(c.detach() - h * e)) / (2 * h)
        for e in torch.eye(len(c), dtype=torch.float64)
    ])
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("optimizer, params", [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "maximize": True}),
    (torch.optim.Adam, {"lr": 0.01}),
    (torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1, "amsgrad": True}),
    (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
])
def test_unrolled_steps_follow_torch_optim(optimizer, params):
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)]
    grads = [[torch.randn(p.shape, generator=g, dtype=torch.float64) for p in start] for _ in range(4)]
    grads[1][1] = torch.zeros(2, dtype=torch.float64)  # a zero gradient, as for a dead unit
    reference = [p.clone().requires_grad_() for p in start]
    torch_optimizer = optimizer(reference, **params)
    inner = inner_optimizer(optimizer, params)
    values, state = start, [None, None]
    for t, step_grads in enumerate(grads, 1):
        for p, grad in zip(reference, step_grads):
            p.grad = grad.clone()
        torch_optimizer.step()
        values, state = inner.step(values, step_grads, state, t)
        for ours, theirs in zip(values, reference):
            torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-12)


# --- the search ----------------------------------------------------------------------------------

def _score(loss, coefficients, data, seeds=range(8)):
    """Meta objective averaged over fixed initialisations, on fixed batches."""
    X_train, y_train, X_valid, y_valid = data
    values = []
    for seed in seeds:
        torch.manual_seed(seed)
        values.append(meta_objective(
            loss, torch.as_tensor(coefficients, dtype=torch.float32), MLP(),
            [(X_train, y_train)], (X_valid, y_valid), optimizer_params={"lr": 0.5}).item())
    return np.mean(values)


def test_local_search_rescues_a_badly_scaled_coefficient(data):
    # A coefficient of 0.01 on the log shrinks cross-entropy's step a hundredfold.
    loss = SymbolicLoss(CROSS_ENTROPY)
    start = [1.0, 1.0, 0.01, 1.0]
    result = learn_coefficients(loss, MLP, *data, optimizer_params={"lr": 0.5}, meta_steps=40,
                                meta_lr=0.05, batch_size=64, coefficients=start, random_state=0)
    assert result.coefficients[2] > 0.3
    assert np.mean(result.meta_losses[-5:]) < np.mean(result.meta_losses[:5])
    assert _score(loss, result.coefficients, data) < _score(loss, start, data) - 0.2
    assert result.n_nan_steps == 0


def test_result_carries_the_refined_loss(data):
    loss = SymbolicLoss(CROSS_ENTROPY)
    result = learn_coefficients(loss, MLP, *data, meta_steps=3, random_state=0)
    assert isinstance(result, LearnedCoefficients)
    assert len(result.meta_losses) == 3 and all(np.isfinite(result.meta_losses))
    # EvoMAL's start, 1 + 0.001 * N(0, 1), rounded to the data's float32.
    start = result.initial_coefficients
    assert np.all(np.abs(start - 1) < 0.01) and np.ptp(start) > 0
    refined = result.loss
    assert isinstance(refined, SymbolicLoss) and refined.program_ == loss.program_
    np.testing.assert_allclose(refined.coefficients.numpy(), result.coefficients, rtol=1e-6)
    assert loss.coefficients is None  # the input is left alone


def test_same_random_state_gives_identical_coefficients(data):
    loss = SymbolicLoss(CROSS_ENTROPY)
    kwargs = dict(optimizer_params={"lr": 0.1, "momentum": 0.9}, meta_steps=6, meta_lr=0.01, random_state=7)
    first = learn_coefficients(loss, MLP, *data, **kwargs)
    second = learn_coefficients(loss, MLP, *data, **kwargs)
    np.testing.assert_array_equal(first.coefficients, second.coefficients)
    assert first.meta_losses == second.meta_losses
    other = learn_coefficients(loss, MLP, *data, **{**kwargs, "random_state": 8})
    assert not np.array_equal(first.coefficients, other.coefficients)


def test_global_torch_rng_is_left_as_it_was(data):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    learn_coefficients(SymbolicLoss(), MLP, *data, meta_steps=2, random_state=0)
    assert torch.equal(torch.get_rng_state(), state)

    def reseeding(losses):  # as a real validation does: Trainer.fit seeds torch
        torch.manual_seed(0)
        return [float(np.abs(loss.coefficients.numpy() - 1).sum()) for loss in losses]

    result = learn_coefficients(SymbolicLoss(), MLP, *data, meta_steps=4, meta_lr=0.1, random_state=0,
                                validate=reseeding, checkpoints=2, confirm=reseeding)
    assert result.confirmed and torch.equal(torch.get_rng_state(), state)


class Probabilities(MLP):
    def forward(self, x):
        out = self.net(x)
        return torch.sigmoid(out) if out.shape[-1] == 1 else torch.softmax(out, dim=-1)


@pytest.mark.parametrize("task, link, n_out, program", [
    ("multiclass", "softmax", 3, CROSS_ENTROPY),
    ("multiclass", "probabilities", 3, CROSS_ENTROPY),
    ("binary", "sigmoid", 1, CROSS_ENTROPY),
    ("binary", "probabilities", 1, CROSS_ENTROPY),
    ("regression", "identity", 1, "square(sub(y, yhat))"),
])
def test_non_finite_meta_objective_skips_steps_without_raising(data, task, link, n_out, program):
    # Coefficients of 1e30 overflow float32: the inner step sends the weights to inf or NaN.
    X_train, y_train, X_valid, y_valid = data
    if task != "multiclass":
        y_train, y_valid = (y_train == 0).float(), (y_valid == 0).float()
    loss = SymbolicLoss(program, task=task, link=link)
    module = Probabilities if link == "probabilities" else MLP
    result = learn_coefficients(loss, lambda: module(n_out=n_out), X_train, y_train, X_valid, y_valid,
                                optimizer_params={"lr": 0.1}, meta_steps=3,
                                coefficients=[1e30] * (len(loss.program_) - 1), random_state=0)
    assert result.n_nan_steps == 3
    assert not np.isfinite(result.meta_losses).any()
    np.testing.assert_array_equal(result.coefficients, result.initial_coefficients)


def test_coefficients_that_overflow_are_reverted(data):
    loss = SymbolicLoss(CROSS_ENTROPY)
    result = learn_coefficients(loss, MLP, *data, meta_steps=3, meta_lr=1e39, random_state=0)
    assert np.isfinite(result.coefficients).all()
    assert result.n_nan_steps >= 1


def test_a_loss_blind_to_the_prediction_leaves_coefficients_alone(data):
    result = learn_coefficients(SymbolicLoss("mul(y, y)"), MLP, *data, meta_steps=3, random_state=0)
    np.testing.assert_array_equal(result.coefficients, result.initial_coefficients)
    assert len(result.meta_losses) == 3 and result.n_nan_steps == 0


def test_other_optimizers_fall_back_to_sgd_with_a_warning(data):
    with pytest.warns(UserWarning, match="RMSprop"):
        result = learn_coefficients(SymbolicLoss(), MLP, *data, optimizer=torch.optim.RMSprop,
                                    optimizer_params={"lr": 0.1}, meta_steps=3, random_state=0)
    assert np.isfinite(result.meta_losses).all()


def test_adam_inner_optimizer_learns(data):
    result = learn_coefficients(SymbolicLoss(), MLP, *data, optimizer=torch.optim.Adam,
                                optimizer_params={"lr": 0.01}, meta_steps=5, meta_lr=0.01, random_state=0)
    assert np.isfinite(result.meta_losses).all() and result.n_nan_steps == 0
    assert not np.allclose(result.coefficients, result.initial_coefficients)


def test_binary_regression_int32_targets_and_small_data(data):
    X_train, y_train, X_valid, y_valid = data
    binary = learn_coefficients(
        SymbolicLoss(CROSS_ENTROPY, task="binary"), lambda: MLP(n_out=1),
        X_train, (y_train == 0).float(), X_valid, (y_valid == 0).float(), meta_steps=2, random_state=0)
    regression = learn_coefficients(
        SymbolicLoss("square(sub(y, yhat))", task="regression"), lambda: MLP(n_out=1),
        X_train[:10], y_train[:10].float(), X_valid[:10], y_valid[:10].float(),
        meta_steps=2, unroll=3, batch_size=128, random_state=0)
    int32 = learn_coefficients(SymbolicLoss(), MLP, X_train, y_train.int(), X_valid, y_valid.int(),
                               meta_steps=2, random_state=0)
    for result in (binary, regression, int32):
        assert np.isfinite(result.meta_losses).all()


def test_a_single_node_program_has_nothing_to_learn(data):
    X_train, y_train, X_valid, y_valid = data
    result = learn_coefficients(SymbolicLoss("yhat", task="regression"), lambda: MLP(n_out=1),
                                X_train, y_train.float(), X_valid, y_valid.float(), random_state=0)
    assert result.coefficients.shape == (0,) and result.meta_losses == []


class FrozenFirstLayer(MLP):
    def __init__(self):
        super().__init__()
        self.net[0].requires_grad_(False)


def test_frozen_parameters_are_not_trained_by_the_inner_steps(data):
    result = learn_coefficients(SymbolicLoss(), FrozenFirstLayer, *data, meta_steps=2, random_state=0)
    assert np.isfinite(result.meta_losses).all() and result.n_nan_steps == 0


@pytest.mark.parametrize("kwargs, name", [
    ({"meta_steps": 0}, "meta_steps"),
    ({"meta_steps": 2.5}, "meta_steps"),
    ({"unroll": 0}, "unroll"),
    ({"meta_lr": 0.0}, "meta_lr"),
    ({"meta_lr": -1e-3}, "meta_lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"coefficients": [1.0, 1.0]}, "coefficients"),
    ({"coefficients": [1.0, np.nan, 1.0, 1.0]}, "coefficients"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"optimizer_params": {"momentum": -1.0}}, "optimizer_params"),
    ({"optimizer_params": {"bogus": 1}}, "optimizer_params"),
    ({"module_factory": None}, "module_factory"),
    ({"y_train": torch.zeros(3, dtype=torch.int64)}, "X_train"),
])
def test_bad_arguments_raise_value_errors_naming_the_parameter(data, kwargs, name):
    X_train, y_train, X_valid, y_valid = data
    args = {"loss": SymbolicLoss(), "module_factory": MLP, "X_train": X_train, "y_train": y_train,
            "X_valid": X_valid, "y_valid": y_valid, "meta_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        learn_coefficients(**args)


class DropoutBatchNorm(MLP):
    """Random draws in every forward pass, and buffers updated in place."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


@pytest.mark.parametrize("unroll", [1, 2])
@pytest.mark.parametrize("module", [MLP, FrozenFirstLayer, DropoutBatchNorm])
def test_losses_learned_together_match_each_learned_alone(data, module, unroll):
    # Programs of different lengths (different numbers of coefficients), one that
    # turns the weights NaN and one that raises: the others must not notice.
    # (No coefficient the objective is blind to, as a scale inside a log: its
    # gradient is rounding noise, which Adam's normalised steps amplify.)
    programs = ["neg(mul(y, tanh(yhat)))", "square(sub(y, yhat))", CROSS_ENTROPY, "mul(yhat, sub(yhat, y))"]
    losses = [SymbolicLoss(p) for p in programs]
    starts = [None, None, [1e30] * 4, None]  # 1e30 overflows float32: the weights turn NaN
    broken = SymbolicLoss(CROSS_ENTROPY)
    broken.reduce = lambda *args: (_ for _ in ()).throw(RuntimeError("broken program"))
    settings = dict(optimizer=torch.optim.SGD, optimizer_params={"lr": 0.5, "momentum": 0.9}, meta_steps=4,
                    meta_lr=0.05, unroll=unroll, batch_size=32, device=torch.device("cpu"))
    together = learn_coefficients_group(losses + [broken], module, *data, random_state=np.random.RandomState(3),
                                        coefficients=starts + [None], **settings)
    assert isinstance(together[-1], RuntimeError)
    # MLP and FrozenFirstLayer run batched (stacked parameters): their products round otherwise than a
    # lone net's, so the group agrees with lone learning to float32 rounding; DropoutBatchNorm (buffers)
    # steps in lockstep, bit for bit.
    batched = unroll_plan(module(), data[0]) is not None
    assert batched == (module is not DropoutBatchNorm)
    same = (functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6) if batched
            else np.testing.assert_array_equal)
    for loss, start, result in zip(losses, starts, together):
        alone = learn_coefficients(loss, module, *data, random_state=3, coefficients=start, **settings)
        same(result.coefficients, alone.coefficients)
        same(result.meta_losses, alone.meta_losses)
        assert result.n_nan_steps == alone.n_nan_steps
    assert together[2].n_nan_steps == 4
    assert not np.allclose(together[0].coefficients, together[0].initial_coefficients)


class DropoutMLP(MLP):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 3))


def _meta_gradients(losses, css, module, data, inner, unroll, batched):
    """Each loss's meta objective and its gradient to the coefficients, batched or in lockstep."""
    X_train, y_train, X_valid, y_valid = data
    torch.manual_seed(0)
    net = module()
    plan = unroll_plan(net, X_train) if batched else None
    assert (plan is not None) == batched
    train = [(X_train[i * 32:(i + 1) * 32], y_train[i * 32:(i + 1) * 32]) for i in range(unroll)]
    torch.manual_seed(1)  # the dropout draws
    objectives = _unrolled_objectives(losses, [cs.unbind() for cs in css], net, dict(net.named_parameters()), train,
                                      (X_valid[:32], y_valid[:32]), inner, _task_loss(losses[0]), False, plan)
    results = []
    for cs, objective in zip(css, objectives):
        if isinstance(objective, Exception):
            results.append(objective)
            continue
        (grad,) = torch.autograd.grad(objective, cs, retain_graph=True, allow_unused=True)
        results.append((objective.item(), None if grad is None else grad.numpy()))
    return results


@pytest.mark.parametrize("unroll", [1, 3])
@pytest.mark.parametrize("module", [MLP, DropoutMLP])
@pytest.mark.parametrize("optimizer, params", [
    (torch.optim.SGD, {"lr": 0.5, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    (torch.optim.Adam, {"lr": 0.01, "weight_decay": 1e-3}),
])
def test_batched_unroll_gives_each_loss_its_own_meta_gradient(data, module, unroll, optimizer, params):
    # Among the losses: one that turns its weights NaN, one blind to the prediction (its network must not
    # step, weight decay included) and one that raises.
    programs = ["neg(mul(y, tanh(yhat)))", "square(sub(y, yhat))", CROSS_ENTROPY, "mul(yhat, sub(yhat, y))",
                "mul(y, y)", CROSS_ENTROPY]
    losses = [SymbolicLoss(p) for p in programs]
    losses[-1].reduce = lambda *args: (_ for _ in ()).throw(RuntimeError("broken program"))
    inner = inner_optimizer(optimizer, params)

    def coefficients():
        css = [torch.ones(len(loss.program_) - 1, requires_grad=True) for loss in losses]
        css[2] = torch.full((4,), 1e30, requires_grad=True)  # overflows float32: the weights turn NaN
        return css

    lockstep = _meta_gradients(losses, coefficients(), module, data, inner, unroll, batched=False)
    batched = _meta_gradients(losses, coefficients(), module, data, inner, unroll, batched=True)
    assert isinstance(lockstep[-1], RuntimeError) and isinstance(batched[-1], RuntimeError)
    assert np.isnan(lockstep[2][0]) and np.isnan(batched[2][0])
    assert lockstep[4][1] is None and batched[4][1] is None  # the blind loss's coefficients reach nothing
    for (objective, grad), (objective_b, grad_b) in zip(lockstep[:2] + lockstep[3:5], batched[:2] + batched[3:5]):
        np.testing.assert_allclose(objective_b, objective, rtol=1e-6)
        if grad is not None:
            # To 1e-5 of the gradient's scale (a small component of a large gradient carries the large
            # components' rounding); inner Adam's first step is nearly blind to the gradient's scale, so its
            # meta-gradient is rounding-sized (~1e-7), hence the absolute floor.
            np.testing.assert_allclose(grad_b, grad, rtol=1e-5, atol=1e-6 + 1e-5 * np.abs(grad).max())


def test_only_linear_elementwise_modules_on_one_2d_input_unroll_batched(data):
    X = data[0]
    assert unroll_plan(MLP(), X) is not None and unroll_plan(DropoutMLP(), X) is not None
    assert unroll_plan(DropoutBatchNorm(), X) is None  # buffers
    assert unroll_plan(MLP(), {"x": X}) is None
    frozen = MLP().requires_grad_(False)
    assert unroll_plan(frozen, X) is None


def test_checkpoints_validate_the_start_and_keep_the_best(data):
    seen = []

    def validate(losses):  # pretends the coefficients furthest from the start train best, but one fails
        seen.append(len(losses))
        scores = [-abs(float(loss.coefficients.sum()) - 4.0) for loss in losses]
        return [np.nan if i == 2 else score for i, score in enumerate(scores)]

    result = learn_coefficients(SymbolicLoss(CROSS_ENTROPY), MLP, *data, optimizer_params={"lr": 0.5},
                                meta_steps=20, meta_lr=0.05, random_state=0, validate=validate, checkpoints=4)
    steps = [step for step, _ in result.checkpoints]
    assert steps == [0, 5, 10, 15, 20]  # the start, then every quarter of the search
    assert seen == [5]  # validated together, after the search
    scores = [score for _, score in result.checkpoints]
    best = int(np.nanargmax(scores))
    assert abs(float(result.coefficients.sum()) - 4.0) == pytest.approx(-scores[best], abs=1e-5)


def test_a_local_search_never_returns_worse_than_the_program_on_its_validation_rows(data):
    def validate(losses):  # the program as it is trains best: any learned change is worse
        return [-float(np.abs(loss.coefficients.numpy() - 1).sum()) for loss in losses]

    result = learn_coefficients(SymbolicLoss(CROSS_ENTROPY), MLP, *data, optimizer_params={"lr": 0.5},
                                meta_steps=10, meta_lr=0.1, random_state=0, validate=validate, checkpoints=5)
    np.testing.assert_array_equal(result.coefficients, np.ones(4))
    assert result.checkpoints[0] == (0, 0.0) and len(result.checkpoints) == 6


@pytest.mark.parametrize("confirmed_better", [True, False])
def test_the_best_screened_checkpoint_is_kept_only_if_confirm_scores_it_above_the_start(data, confirmed_better):
    calls = []

    def screen(losses):  # the checkpoints furthest from the start look best
        return [float(np.abs(loss.coefficients.numpy() - 1).sum()) for loss in losses]

    def confirm(losses):
        calls.append(len(losses))
        return screen(losses) if confirmed_better else [-s for s in screen(losses)]

    result = learn_coefficients(SymbolicLoss(CROSS_ENTROPY), MLP, *data, optimizer_params={"lr": 0.5},
                                meta_steps=8, meta_lr=0.1, random_state=0, validate=screen, checkpoints=4,
                                confirm=confirm)
    assert calls == [2]  # the start and the best checkpoint, once
    (start_step, start), (step, best) = result.confirmed
    assert start_step == 0 and step == max(result.checkpoints, key=lambda c: c[1])[0] > 0
    if confirmed_better:
        assert best > start and not np.allclose(result.coefficients, 1)
    else:
        np.testing.assert_array_equal(result.coefficients, np.ones(4))


def test_no_confirmation_when_the_start_screens_best(data):
    def confirm(losses):
        raise AssertionError("the start needs no confirmation")

    result = learn_coefficients(SymbolicLoss(CROSS_ENTROPY), MLP, *data, optimizer_params={"lr": 0.5},
                                meta_steps=6, meta_lr=0.1, random_state=0, checkpoints=3, confirm=confirm,
                                validate=lambda losses: [-float(np.abs(loss.coefficients.numpy() - 1).sum())
                                                         for loss in losses])
    np.testing.assert_array_equal(result.coefficients, np.ones(4))
    assert result.confirmed == []


def test_a_local_search_whose_checkpoints_all_fail_returns_the_program(data):
    result = learn_coefficients(SymbolicLoss(CROSS_ENTROPY), MLP, *data, meta_steps=4, random_state=0,
                                validate=lambda losses: [np.nan] * len(losses), checkpoints=2)
    np.testing.assert_array_equal(result.coefficients, np.ones(4))


