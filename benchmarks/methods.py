"""Loss learners compared with EvoMAL in the quality benchmark.

Each ``run_*`` function sees a task's training part only (its own CV inside)
and returns a JSON-able record: ``spec`` (what :func:`make_criterion` turns
back into a criterion), the search's wall time, the networks it trained and
what it did along the way.

- label smoothing and focal loss: one parameter tuned by ``GridSearchCV`` over
  skorch nets, on the same CV folds as the loss search;
- TaylorGLO: the 8-parameter third-order Taylor polynomial loss, tuned by
  CMA-ES (``cma``) with the CV score as fitness;
- ML3: a small neural network ``(y, yhat) -> loss`` meta-learned by unrolled
  differentiation (one differentiable SGD step, task loss on a validation batch);
- GP-LFL, EvoMAL and GP-LFL followed by ``fit_refine``: :class:`LossSearchCV`.
"""

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from ml3 import NeuralLoss, run_ml3  # noqa: F401 - ML3 lives in its own module
from sklearn.model_selection import GridSearchCV
from sklearn.utils.parallel import Parallel, delayed
from tasks import cv_score, load_task
from torch import nn

from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule, SymbolicLoss
from metaloss_sk.loss import CROSS_ENTROPY

SQUARED_ERROR = "square(sub(y, yhat))"


# --------------------------------------------------------------------------- criteria
def _two_class(out, target):
    """Binary outputs as EvoMAL sees them: ``y = [1 - t, t]``, ``yhat = [1 - p, p]``."""
    z, t = out.reshape(-1), target.reshape(-1).to(out.dtype)
    return torch.stack([1 - t, t], -1), torch.sigmoid(torch.stack([-z, z], -1))


class LabelSmoothingCE(nn.CrossEntropyLoss):
    """Cross-entropy against targets smoothed by ``smoothing`` (torch's own)."""

    def __init__(self, smoothing=0.1):
        super().__init__(label_smoothing=float(smoothing))
        self.smoothing = smoothing


class LabelSmoothingBCE(nn.BCEWithLogitsLoss):
    """Binary cross-entropy against ``t (1 - smoothing) + smoothing / 2``."""

    def __init__(self, smoothing=0.1):
        super().__init__()
        self.smoothing = smoothing

    def forward(self, out, target):
        t = target.reshape(-1).to(out.dtype)
        return F.binary_cross_entropy_with_logits(out.reshape(-1), t * (1 - self.smoothing) + self.smoothing / 2)


class FocalCE(nn.CrossEntropyLoss):
    """Focal loss ``-(1 - p_t)^gamma log p_t`` (gamma = 0 is cross-entropy)."""

    def __init__(self, gamma=2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, out, target):
        log_p = F.log_softmax(out, -1).gather(1, target.long().reshape(-1, 1)).reshape(-1)
        return (-(1 - log_p.exp()).clamp_min(1e-12) ** self.gamma * log_p).mean()


class FocalBCE(nn.BCEWithLogitsLoss):
    """Binary focal loss on one logit."""

    def __init__(self, gamma=2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, out, target):
        z, t = out.reshape(-1), target.reshape(-1).to(out.dtype)
        log_p = -F.binary_cross_entropy_with_logits(z, t, reduction="none")  # log p_t
        return (-(1 - log_p.exp()).clamp_min(1e-12) ** self.gamma * log_p).mean()


class Poly1CE(nn.CrossEntropyLoss):
    """PolyLoss Poly-1: cross-entropy plus ``epsilon (1 - p_t)``, epsilon 1."""

    def forward(self, out, target):
        log_p = F.log_softmax(out, -1).gather(1, target.long().reshape(-1, 1)).reshape(-1)
        return (-log_p + 1 - log_p.exp()).mean()


class Poly1BCE(nn.BCEWithLogitsLoss):
    """Binary Poly-1 on one logit."""

    def forward(self, out, target):
        log_p = -F.binary_cross_entropy_with_logits(out.reshape(-1), target.reshape(-1).to(out.dtype),
                                                    reduction="none")
        return (-log_p + 1 - log_p.exp()).mean()


class TaylorGLOLoss(nn.Module):
    """TaylorGLO's loss: a third-order Taylor polynomial in ``(y, yhat)`` around ``(theta0, theta1)``.

    With ``u = y - theta0`` and ``v = yhat - theta1`` the per-element loss is::

        theta2 v + theta3 v^2 / 2 + theta4 v^3 / 6 + theta5 u v + theta6 u v^2 / 2 + theta7 u^2 v / 2

    (the terms without ``yhat`` do not change the gradient and are dropped).
    The reference implementation's last term uses ``yhat - theta0``; this is
    the polynomial as defined. ``yhat`` is the softmax (multiclass), the
    sigmoid expanded to ``[1 - p, p]`` (binary) or the raw output (regression);
    the loss sums over classes and averages over the batch, as EvoMAL does.
    """

    def __init__(self, theta, kind="multiclass"):
        super().__init__()
        self.register_buffer("theta", torch.as_tensor(np.asarray(theta, dtype=np.float32)))
        self.kind = kind

    def forward(self, out, target):
        if self.kind == "multiclass":
            y = F.one_hot(target.long(), out.shape[1]).to(out.dtype)
            yhat = torch.softmax(out, -1)
        elif self.kind == "binary":
            y, yhat = _two_class(out, target)
        else:
            y, yhat = target.reshape(out.shape).to(out.dtype), out
        t = self.theta
        u, v = y - t[0], yhat - t[1]
        f = t[2] * v + t[3] * v**2 / 2 + t[4] * v**3 / 6 + t[5] * u * v + t[6] * u * v**2 / 2 + t[7] * u**2 * v / 2
        return f.sum(-1).mean() if self.kind != "regression" else f.mean()


def make_criterion(task, spec):
    """The criterion a method's ``spec`` describes, for ``task``."""
    kind = spec["kind"]
    if kind == "usual":
        return task.usual_loss()
    if kind == "label_smoothing":
        return (LabelSmoothingCE if task.kind == "multiclass" else LabelSmoothingBCE)(spec["value"])
    if kind == "focal":
        return (FocalCE if task.kind == "multiclass" else FocalBCE)(spec["value"])
    if kind == "poly1":
        return Poly1CE() if task.kind == "multiclass" else Poly1BCE()
    if kind == "absolute":
        return nn.L1Loss()
    if kind == "huber":
        return nn.HuberLoss(delta=1.0)
    if kind == "taylorglo":
        return TaylorGLOLoss(spec["theta"], task.kind)
    if kind == "ml3":
        loss = NeuralLoss(task.kind, task.n_classes, spec["hidden"])
        loss.load_state_dict({k: torch.tensor(v) for k, v in spec["state"].items()})
        return loss.requires_grad_(False)
    if kind == "symbolic":
        return SymbolicLoss(**spec["params"])
    raise ValueError(f"unknown loss spec {kind!r}")


def describe(spec):
    """A short text for the loss a spec describes."""
    kind = spec["kind"]
    lr = f" (lr {spec['lr']:g})" if "lr" in spec else ""
    if kind == "label_smoothing":
        return f"smoothing = {spec['value']:g}{lr}"
    if kind == "focal":
        return f"gamma = {spec['value']:g}{lr}"
    if kind in ("poly1", "absolute", "huber"):
        return {"poly1": "Poly-1", "absolute": "absolute error", "huber": "Huber (delta 1)"}[kind] + lr
    if kind == "taylorglo":
        return "theta = [" + ", ".join(f"{t:.3g}" for t in spec["theta"]) + "]"
    if kind == "ml3":
        return f"MLP 2x{spec['hidden']} loss network"
    if kind == "symbolic":
        return SymbolicLoss(**spec["params"]).infix(precision=3) + lr
    return "the usual loss" + lr


# --------------------------------------------------------------------------- grid-tuned losses
def run_grid(task, kind, values, steps, n_jobs=2):
    """Label smoothing or focal loss with its parameter tuned by GridSearchCV on the CV folds."""
    start = time.perf_counter()
    criterion = {("label_smoothing", "multiclass"): LabelSmoothingCE, ("label_smoothing", "binary"): LabelSmoothingBCE,
                 ("focal", "multiclass"): FocalCE, ("focal", "binary"): FocalBCE}[kind, task.kind]
    name = "smoothing" if kind == "label_smoothing" else "gamma"
    n_rows = len(task.X_train) * (task.cv().get_n_splits() - 1) // task.cv().get_n_splits()
    net = task.skorch_net(steps, n_rows, criterion=criterion)
    grid = GridSearchCV(net, {f"criterion__{name}": list(values)}, cv=task.cv(), n_jobs=n_jobs, refit=False,
                        error_score=0.0)
    torch.manual_seed(0)
    grid.fit(task.X_train, task.y_train)
    best = grid.best_params_[f"criterion__{name}"]
    return {
        "spec": {"kind": kind, "value": float(best)},
        "time_s": time.perf_counter() - start,
        "fold_fits": len(values) * task.cv().get_n_splits(),
        "meta_steps": 0,
        "cv_score": float(grid.best_score_),
        "details": {"values": [float(v) for v in values],
                    "mean_test_score": [float(s) for s in grid.cv_results_["mean_test_score"]]},
    }


# --------------------------------------------------------------------------- TaylorGLO
#: Brier score, sum_c (yhat - y)^2, is in the family (theta3 = 2, theta5 = -2 around (0, 0));
#: for regression the same theta is squared error. CMA-ES starts there.
TAYLOR_START = [0.0, 0.0, 0.0, 2.0, 0.0, -2.0, 0.0, 0.0]


def _taylor_fold(task_name, theta, k, steps):
    torch.set_num_threads(1)
    task = load_task(task_name)
    fold = [task.folds()[k]]
    return cv_score(task, lambda: TaylorGLOLoss(theta, task.kind), steps, fold_seed=1000 + k, folds=fold)


def run_taylorglo(task, steps, popsize, generations, max_time, sigma=1.2, seed=0, n_jobs=2):
    """TaylorGLO: CMA-ES over the 8 parameters, fitness the mean CV score."""
    import cma

    start = time.perf_counter()
    n_folds = task.cv().get_n_splits()
    es = cma.CMAEvolutionStrategy(TAYLOR_START, sigma, {"popsize": popsize, "seed": seed + 1, "verbose": -9})
    best_theta, best_score, history, evaluations = list(TAYLOR_START), -math.inf, [], 0
    with Parallel(n_jobs=n_jobs) as parallel:
        for generation in range(generations):
            thetas = es.ask()
            if generation == 0:
                thetas[0] = np.array(TAYLOR_START, dtype=float)  # score the start exactly
            fold_scores = parallel(delayed(_taylor_fold)(task.name, list(map(float, th)), k, steps)
                                   for th in thetas for k in range(n_folds))
            scores = np.array(fold_scores).reshape(len(thetas), n_folds).mean(1)
            evaluations += len(thetas)
            i = int(np.argmax(scores))
            if scores[i] > best_score:
                best_score, best_theta = float(scores[i]), [float(t) for t in thetas[i]]
            es.tell(thetas, list(-scores))
            history.append({"generation": generation, "best_score": best_score,
                            "median_score": float(np.median(scores)), "elapsed": time.perf_counter() - start})
            if time.perf_counter() - start >= max_time:
                break
    return {
        "spec": {"kind": "taylorglo", "theta": best_theta},
        "time_s": time.perf_counter() - start,
        "fold_fits": evaluations * n_folds,
        "meta_steps": 0,
        "cv_score": best_score,
        "history": history,
    }


# --------------------------------------------------------------------------- LossSearchCV
def _history(search):
    keep = ("generation", "best_score", "median_score", "trained", "cache_hits", "failures", "elapsed")
    return [{k: (float(h[k]) if k in ("best_score", "median_score", "elapsed") else int(h[k]))
             for k in keep if k in h} for h in search.history_]


def _usual_cv_score(search, task):
    usual = SQUARED_ERROR if task.kind == "regression" else CROSS_ENTROPY
    rows = list(search.cv_results_["program"])
    return float(search.cv_results_["mean_test_score"][rows.index(usual)]) if usual in rows else None


def _symbolic_spec(loss, lr=None):
    return {"kind": "symbolic", "params": loss.get_params(), **({} if lr is None else {"lr": lr})}


def run_search(task, steps, final_steps, population, generations, max_time, local_search=None, meta_steps=250,
               checkpoints=10, refine=False, refine_top_k=3, refine_meta_steps=250, refine_checkpoints=10, seed=0,
               n_jobs=2, verbose=0):
    """GP-LFL (``local_search=None``), EvoMAL (``"all"``) and, with ``refine``, GP-LFL + ``fit_refine``.

    The genetic search trains candidates for ``steps``; the winner is chosen at ``final_steps``, the
    final training's budget (the library's successive halving), against the usual loss there.
    Returns ``{method: record}``: ``"gp-lfl"`` or ``"evomal"``, plus ``"gp-lfl+refine"`` with ``refine``.
    """
    n_folds = task.cv().get_n_splits()
    n_rows = len(task.X_train) * (n_folds - 1) // n_folds
    net = task.skorch_net(final_steps, n_rows, criterion=type(task.usual_loss()))
    # The library's defaults otherwise: the learning rate tuned for the usual loss (search_lr="tuned"), the
    # known losses seeded (seed_programs="auto") and an evolved program kept only beyond the margin ("se").
    search = LossSearchCV(
        net, evolution=Evolution(population_size=population), generations=generations,
        schedule=Schedule(min_resources=steps, max_resources=final_steps),
        max_time=max_time, local_search=LocalSearch(meta_steps=meta_steps, n_checkpoints=checkpoints)
        if local_search == "all" else None,
        cv=task.cv(), refit=False, n_jobs=n_jobs, random_state=seed, verbose=verbose,
    )
    start = time.perf_counter()
    search.fit(task.X_train, task.y_train)
    search_time = time.perf_counter() - start
    stats = search.search_stats_
    name = "evomal" if local_search == "all" else "gp-lfl"
    # EvoMAL learns coefficients for every candidate on every fold, then once more on all the data.
    searched_meta = stats["meta_steps"] + meta_steps if local_search == "all" else 0
    lr = float(search.best_lr_)  # the rate best_loss_ was chosen at (and best_estimator_ refit at)
    out = {name: {
        "spec": _symbolic_spec(search.best_loss_, lr),
        "time_s": search_time,
        "fold_fits": int(stats["fold_fits"]),
        "meta_steps": int(searched_meta),
        "cv_score": float(search.best_score_),
        "usual_cv_score": _usual_cv_score(search, task),
        "history": _history(search),
        "details": {"search_stats": {k: float(v) for k, v in stats.items()},
                    "n_resources": search.n_resources_, "n_candidates": search.n_candidates_,
                    "baseline": search.baseline_,
                    "hall_of_fame": [{"infix": str(h["infix"]), "score": float(h["mean_test_score"]),
                                      "n_resources": int(h["n_resources"])} for h in search.hall_of_fame_[:5]]},
    }}
    if local_search != "all":
        # The winner without the margin (margin=0): the best program at the final rung, known or evolved.
        top = int(np.argmin(search.cv_results_["rank_test_score"]))
        out[f"{name}-nomargin"] = {**out[name], "spec": {"kind": "symbolic", "lr": float(search.search_lr_),
                                                         "params": search.loss(1).get_params()},
                                   "cv_score": float(search.cv_results_["mean_test_score"][top])}
    if refine:
        settings = LocalSearch(candidates="winners", meta_steps=refine_meta_steps, top_k=refine_top_k,
                               n_checkpoints=refine_checkpoints)
        start = time.perf_counter()
        search.fit_refine(task.X_train, task.y_train, settings)
        refine_time = time.perf_counter() - start
        results = search.refine_results_
        kept = sum(bool(r["kept"]) for r in results)
        out["gp-lfl+refine"] = {
            "spec": _symbolic_spec(search.best_loss_, lr),
            "time_s": search_time + refine_time,
            "fold_fits": int(search.search_stats_["fold_fits"]),
            "meta_steps": (len(results) * n_folds + kept) * refine_meta_steps,
            "cv_score": float(search.best_score_),
            "usual_cv_score": out[name]["usual_cv_score"],
            "history": out[name]["history"],
            "details": {"refine_time_s": refine_time,
                        "refine_results": [{"program": str(r["program"]), "score_before": float(r["score_before"]),
                                            "score_after": float(r["score_after"]), "kept": bool(r["kept"]),
                                            "difference": float(r["difference"]), "margin": float(r["margin"])}
                                           for r in results]},
        }
    return out


# --------------------------------------------------------------------------- learning-rate tuning
#: Learning rates every tuned row tries: EvoMAL's 0.01 times 10^(-1 ... 1.5), on a log grid.
LR_GRID = [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316]


def _lr_fold(task_name, spec, lr, k, steps):
    torch.set_num_threads(1)
    task = load_task(task_name)
    return cv_score(task, lambda: make_criterion(task, spec), steps, fold_seed=1000 + k, folds=[task.folds()[k]],
                    lr=lr)


def run_lr_tuning(task, spec, steps, lrs=LR_GRID, n_jobs=2):
    """A loss with the learning rate of its final training tuned by the same 3-fold CV, at ``steps``."""
    start = time.perf_counter()
    n_folds = task.cv().get_n_splits()
    scores = Parallel(n_jobs=n_jobs)(delayed(_lr_fold)(task.name, spec, lr, k, steps)
                                     for lr in lrs for k in range(n_folds))
    means = np.array(scores).reshape(len(lrs), n_folds).mean(1)
    best = int(np.argmax(means))
    return {
        "spec": {**spec, "lr": float(lrs[best])},
        "time_s": time.perf_counter() - start,
        "fold_fits": len(lrs) * n_folds,
        "meta_steps": 0,
        "cv_score": float(means[best]),
        "details": {"lrs": [float(v) for v in lrs], "mean_test_score": [float(v) for v in means]},
    }


# --------------------------------------------------------------------------- the practitioner's pick
def practitioner_specs(task):
    """The losses a practitioner tries first: the usual loss and the well-known ones for ``task``'s kind."""
    if task.kind == "regression":
        return [{"kind": "usual"}, {"kind": "absolute"}, {"kind": "huber"}]
    return [{"kind": "usual"}, {"kind": "label_smoothing", "value": 0.1}, {"kind": "focal", "value": 2.0},
            {"kind": "poly1"}]


def run_practitioner(task, steps, usual_lr_record, lrs=LR_GRID, n_jobs=2):
    """The practitioner's pick: every known loss crossed with ``lrs``, the pair chosen by the same 3-fold CV.

    The usual loss's scores come from ``usual_lr_record`` (the "usual+lr" row, same folds, seeds and steps).
    """
    start = time.perf_counter()
    n_folds = task.cv().get_n_splits()
    others = practitioner_specs(task)[1:]
    scores = Parallel(n_jobs=n_jobs)(delayed(_lr_fold)(task.name, spec, lr, k, steps)
                                     for spec in others for lr in lrs for k in range(n_folds))
    means = np.array(scores).reshape(len(others), len(lrs), n_folds).mean(2)
    table = [({"kind": "usual"}, lr, m) for lr, m in zip(usual_lr_record["details"]["lrs"],
                                                          usual_lr_record["details"]["mean_test_score"])]
    table += [(spec, lr, float(means[i, j])) for i, spec in enumerate(others) for j, lr in enumerate(lrs)]
    spec, lr, best = max(table, key=lambda row: row[2])
    return {
        "spec": {**spec, "lr": float(lr)},
        "time_s": time.perf_counter() - start + usual_lr_record["time_s"],
        "fold_fits": len(table) * n_folds,
        "meta_steps": 0,
        "cv_score": float(best),
        "details": {"table": [{"loss": describe(s), "lr": float(r), "mean_test_score": float(m)}
                              for s, r, m in table]},
    }
