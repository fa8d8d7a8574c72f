"""metaloss_sk.training: a group trained as one batched network, the lockstep fallback, their agreement, and the
fast loop against skorch's fit."""

import numpy as np
import pytest
import torch
from conftest import classifier, iris
from skorch import NeuralNetRegressor
from torch import nn

from metaloss_sk import Evolution, LossSearchCV, SymbolicLoss
from metaloss_sk.batched import batch_plan
from metaloss_sk.evaluator import Evaluator, EvaluatorConfig
from metaloss_sk.nets import MLP
from metaloss_sk.training import Budget, Trainer, _fit_fast, _train_together, batch_blocker, build_net

PROGRAMS = ["neg(mul(y, log(yhat)))", "neg(mul(mul(y, square(sub(1.0, yhat))), log(yhat)))",
            "square(sub(y, yhat))", "neg(mul(y, yhat))", "abs(sub(y, yhat))",
            "add(neg(mul(y, log(yhat))), square(sub(y, yhat)))", "neg(mul(y, tanh(yhat)))",
            "mul(0.5, square(sub(y, yhat)))"]
#: Batched products round differently from a lone net's: the stated agreement after a few epochs.
TOL = 1e-5


class DropoutMLP(nn.Module):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.hidden, self.drop, self.output = nn.Linear(n_in, n_hidden), nn.Dropout(0.3), nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.output(self.drop(torch.tanh(self.hidden(x))))


class DeepMLP(nn.Module):
    """Two hidden layers, functional activations, arithmetic on the input and a residual sum."""

    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.a, self.b = nn.Linear(n_in, n_hidden), nn.Linear(n_hidden, n_hidden)
        self.out = nn.Linear(n_hidden, n_out, bias=False)

    def forward(self, x):
        h = nn.functional.relu(self.a(x * 0.5))
        h = h + torch.sigmoid(self.b(h))
        return self.out(nn.functional.dropout(h, 0.2, self.training))


class ConvNet(nn.Module):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.conv, self.out = nn.Conv1d(1, 2, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.conv(x.unsqueeze(1))).flatten(1))


class NormNet(nn.Module):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.hidden, self.norm, self.out = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.norm(self.hidden(x))))


class BranchyNet(nn.Module):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.hidden(x)
        if h.mean() > 0:  # control flow on a tensor's value
            h = torch.relu(h)
        return self.out(h)


def _weights(estimator, losses, X, y, budget, lockstep=False):
    """Each loss's trained state dict (None when it failed) and failure, by the fast loop."""
    if lockstep:
        net_ = build_net(estimator, losses[0], budget, len(X))
        torch.manual_seed(0)
        net_.initialize()
        modules, failures = _train_together(net_, losses, torch.as_tensor(X), torch.as_tensor(y), budget, 0)
        return [m.state_dict() for m in modules], failures
    found = list(_fit_fast(estimator, losses, X, y, budget, 0))
    return [m if isinstance(m, dict) or m is None else m.state_dict() for _, m, _ in found], [f for *_, f in found]


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("settings", [
    dict(optimizer__momentum=0.9, optimizer__nesterov=True, optimizer__weight_decay=5e-4),
    dict(optimizer=torch.optim.Adam, lr=0.01, optimizer__weight_decay=1e-3),
])
@pytest.mark.parametrize("module", [MLP, DeepMLP, DropoutMLP])
def test_a_batched_group_trains_each_candidate_as_lone_training_does(module, settings):
    X, y = iris()
    net = classifier(module=module, iterator_train__shuffle=True, **settings)
    if module is not MLP:
        net.set_params(module__n_in=4, module__n_hidden=8, module__n_out=3)
    assert Trainer(net).loop(X) == "batched"
    losses = [SymbolicLoss(p) for p in PROGRAMS]
    budget = Budget(max_epochs=4)
    group, failures = _weights(net, losses, X, y, budget)
    assert failures == [None] * len(losses)
    for k, loss in enumerate(losses):
        (alone,), _ = _weights(net, [loss], X, y, budget, lockstep=True)  # exactly a lone net's training
        assert _max_diff(group[k], alone) < TOL, PROGRAMS[k]
    # The losses act: the copies differ well beyond the tolerance.
    assert _max_diff(group[0], group[3]) > 100 * TOL


def test_a_batched_regressor_matches_lone_training():
    X, y = iris()
    target = X[:, 0].copy()
    net = NeuralNetRegressor(MLP, module__n_in=4, module__n_hidden=8, module__n_out=1, lr=0.05, max_epochs=3,
                             batch_size=32, train_split=None, verbose=0)
    losses = [SymbolicLoss(p, task="regression") for p in ["square(sub(y, yhat))", "abs(sub(y, yhat))"]]
    group, failures = _weights(net, losses, X, target.reshape(-1, 1), Budget(3))
    assert failures == [None, None]
    for k, loss in enumerate(losses):
        (alone,), _ = _weights(net, [loss], X, target.reshape(-1, 1), Budget(3), lockstep=True)
        assert _max_diff(group[k], alone) < TOL


def test_a_failing_candidate_fails_alone_in_a_batched_group():
    X, y = iris()
    net = classifier(optimizer__momentum=0.9)
    losses = [SymbolicLoss(p) for p in ["neg(mul(y, log(yhat)))", "mul(1e+30, mul(1e+30, square(sub(y, yhat))))",
                                        "square(sub(y, yhat))"]]
    group, failures = _weights(net, losses, X, y, Budget(4))
    assert failures == [None, "the training loss became NaN or infinite", None]
    (alone,), _ = _weights(net, [losses[2]], X, y, Budget(4), lockstep=True)
    assert _max_diff(group[2], alone) < TOL


@pytest.mark.parametrize("module, reason", [
    (ConvNet, "Conv1d"), (NormNet, "buffers"), (BranchyNet, "traced"),
])
def test_modules_that_cannot_be_batched_keep_the_lockstep_loop(module, reason):
    X, y = iris()
    net = classifier(module=module)
    net_ = build_net(net, SymbolicLoss())
    net_.initialize()
    _, why = batch_plan(net_.module_)
    assert reason in why and batch_blocker(net_, X) == why
    assert Trainer(net).loop(X) == "lockstep"
    losses = [SymbolicLoss(p) for p in PROGRAMS[:3]]
    found = list(Trainer(net).fit(losses, X, y, Budget(2), 0))
    assert all(failure is None for _, failure in found)


def test_the_loop_is_reported():
    X, y = iris()
    assert Trainer(classifier(optimizer=torch.optim.LBFGS), fast=False).loop(X) == "skorch"
    assert Trainer(classifier(optimizer=torch.optim.LBFGS)).loop(X) == "lockstep"  # not elementwise
    search = LossSearchCV(classifier(), generations=1, cv=2, random_state=0, refit=False,
                          evolution=Evolution(population_size=4, rejection_steps=20)).fit(*iris())
    assert search.search_stats_["train_loop"] == "batched"


def test_the_grouping_does_not_depend_on_n_jobs():
    losses = [SymbolicLoss(p) for p in PROGRAMS * 2]
    for splits in ([("train", "test")], [("a", "b")] * 3):
        groups = []
        for n_jobs in (1, 2, 4, -1):
            config = EvaluatorConfig(evaluation=None, fold_seeds=(0,), plan=None, n_jobs=n_jobs,
                                     candidates_per_task=8)
            groups.append(Evaluator(config, None, None, splits, parallel=None)._groups(losses))
        assert all(g == groups[0] for g in groups)
        assert sorted(i for g in groups[0] for i in g) == list(range(len(losses)))


def test_search_results_do_not_depend_on_n_jobs_with_the_batched_loop():
    X, y = iris()
    kw = dict(generations=2, cv=2, random_state=0, refit=False,
              evolution=Evolution(population_size=6, rejection_steps=20))
    one = LossSearchCV(classifier(optimizer__momentum=0.9), n_jobs=1, **kw).fit(X, y)
    two = LossSearchCV(classifier(optimizer__momentum=0.9), n_jobs=2, **kw).fit(X, y)
    assert one.search_stats_["train_loop"] == "batched"
    assert list(one.cv_results_["program"]) == list(two.cv_results_["program"])
    for split in ("split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(one.cv_results_[split], two.cv_results_[split])


class TiedNet(nn.Module):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(n_in, n_hidden), nn.Linear(n_hidden, n_hidden), nn.Linear(n_hidden, n_out)
        self.b.weight = self.a.weight if n_in == n_hidden else self.b.weight

    def forward(self, x):
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))


class FrozenMLP(MLP):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__(n_in, n_hidden, n_out)
        self.hidden.weight.requires_grad_(False)


class TwoOutputs(MLP):
    def forward(self, x):
        out = super().forward(x)
        return out, out


def test_tied_weights_and_several_outputs_are_refused_and_frozen_layers_stay_frozen():
    assert "ties" in batch_plan(TiedNet(8, 8, 3))[1]
    assert "more than one tensor" in batch_plan(TwoOutputs(4, 8, 3))[1]
    X, y = iris()
    net = classifier(module=FrozenMLP, optimizer__momentum=0.9)
    net_ = build_net(net, SymbolicLoss())
    torch.manual_seed(0)
    net_.initialize()
    assert Trainer(net).loop(X) == "batched"
    found = list(_fit_fast(net, [SymbolicLoss(p) for p in PROGRAMS[:2]], X, y, Budget(2), 0))
    for _, state, failure in found:
        assert failure is None
        assert torch.equal(state["hidden.weight"], net_.module_.hidden.weight)
        assert not torch.equal(state["output.weight"], net_.module_.output.weight)


def test_copies_of_one_program_with_their_own_coefficients_train_as_they_would_alone():
    # The local search's checkpoints: one program, several coefficient sets, evaluated as one.
    X, y = iris()
    net = classifier(optimizer__momentum=0.9, iterator_train__shuffle=True)
    program = PROGRAMS[1]
    n = len(SymbolicLoss(program).program_) - 1
    rs = np.random.RandomState(0)
    losses = [SymbolicLoss(program, coefficients=list(rs.uniform(0.5, 1.5, n))) for _ in range(3)]
    losses += [SymbolicLoss(program, coefficients=[1.0] * n), SymbolicLoss(PROGRAMS[0]), SymbolicLoss(PROGRAMS[0]),
               SymbolicLoss(program, coefficients=[1e30] * n)]  # the last overflows: it fails alone
    group, failures = _weights(net, losses, X, y, Budget(4))
    assert failures[:-1] == [None] * 6 and failures[-1] == "the training loss became NaN or infinite"
    for k, loss in enumerate(losses[:-1]):
        (alone,), _ = _weights(net, [loss], X, y, Budget(4), lockstep=True)
        assert _max_diff(group[k], alone) < TOL, k
    assert _max_diff(group[0], group[1]) > 100 * TOL  # the coefficients act


SMALL = dict(generations=2, cv=2, random_state=0, evolution=Evolution(population_size=5, rejection_steps=50))


def test_fast_loop_trains_like_skorch_fit():
    # Without shuffling both loops see the same batches, so the scores agree. skorch's loop trains whole
    # epochs, so the learning-rate ladder's first rung (4 steps, not a whole number of 3-step epochs) is
    # left out: search_lr="net".
    X, y = iris()
    net = classifier(iterator_train__shuffle=False)
    fast = LossSearchCV(net, train_loop="fast", refit=False, search_lr="net", **SMALL).fit(X, y).cv_results_
    slow = LossSearchCV(net, train_loop="skorch", refit=False, search_lr="net", **SMALL).fit(X, y).cv_results_
    assert list(fast["program"]) == list(slow["program"])
    np.testing.assert_allclose(fast["mean_test_score"], slow["mean_test_score"], atol=1e-12)


def test_net_with_callbacks_falls_back_to_skorch_fit():
    from skorch.callbacks import GradientNormClipping
    X, y = iris()
    net = classifier(callbacks=[GradientNormClipping(1.0)], lr=0.5)
    with pytest.raises(ValueError, match="has callbacks"):
        LossSearchCV(net, train_loop="fast", **SMALL).fit(X, y)
    search = LossSearchCV(net, refit=False, **SMALL).fit(X, y)
    assert (search.cv_results_["status"] == "ok").any()
