"""The final selection: the winner chosen at the budget the net trains with, the usual loss beside it.

Functions of an :class:`~metaloss_sk.evaluator.Evaluator` whose genetic search
is over and of the search's :class:`~metaloss_sk.schedule.Plan`; they train
through the evaluator (so results are cached, grouped and independent of
``n_jobs``) and return what the search reports:

- :func:`successive_halving`: the best distinct programs,
  and the seed programs always, climb rungs of growing budget up to the final
  one, the field cut by ``factor`` at each (as scikit-learn's
  ``HalvingGridSearchCV`` does with a resource), the finalists trained with
  several weight seeds per fold;
- :func:`select`: the whole final selection, in that order;
- :func:`winner` and :func:`contest_at_rates`: the best program at the
  highest rung, never one that failed, and an evolved one only where it
  beats the best seed program (the known losses) by a margin (:func:`beats`);
- :func:`tune_learning_rate`: the usual loss over a grid of learning rates
  at the final budget, by successive halving over weight seeds, on the same
  folds and seeds;
- :func:`local_search_winners`: the local search on the best programs,
  judged at the final budget;
- :func:`simplest_within_one_se`: a ``refit`` callable for
  :class:`~metaloss_sk.LossSearchCV`, as ``GridSearchCV`` takes one.
"""

import math
import time
import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from .loss import usual_loss
from .results import cv_results, hall_of_fame, ranking

__all__ = ["Selection", "beats", "contest_at_rates", "known_scores", "learning_rates", "local_search_winners",
           "margin_of", "neighbour_rates", "refit_choice", "search_rate", "select", "successive_halving",
           "tune_learning_rate", "usual_baseline", "winner"]

#: Chance-level scores can also come from a net whose lr is so high that it diverged to a constant prediction
#: without a non-finite loss (protected primitives such as log keep the loss finite).
_TOO_HIGH = " (If lr is already large, lower it instead: a net that diverges can also end at chance level.)"
#: The default grid of learning rates, as multiples of the net's: 10^-2 to 10^2 in half decades.
LR_FACTORS = tuple(10 ** (k / 2) for k in range(-4, 5))


def successive_halving(evaluator, plan, budgets):
    """Promote the best distinct programs through ``budgets``; returns ``(n_resources, n_candidates)`` per rung.

    ``budgets`` are ``plan.rungs``, or none (an interrupted search). Rung 0 is
    the genetic search (rungs 0 and 1 with a screening). The field entering rung ``j`` of ``k`` is
    the ``n_finalists * factor ** (k - 1 - j)`` best by their last score, plus
    the seed programs; the last rung trains each with ``final_seeds`` weight
    seeds per fold. A program that fails on any fold, seed or rung leaves the
    field.
    """
    rows = evaluator.rows
    protected = [rows[rows[p].equivalent_to or p] for p in evaluator.config.seed_programs if p in rows]
    protected = [row for row in dict.fromkeys(protected) if row.status == "ok"]
    field = [row for row in rows.values()
             if not row.equivalent_to and row.status == "ok" and evaluator.reached_fitness(row)]
    n_resources = [plan.steps(b) for b in plan.searched]
    n_candidates = [evaluator.n_trained] + ([evaluator.totals["promoted"]] if plan.screening is not None else [])
    for j, budget in enumerate(budgets if field else []):
        size = math.ceil(plan.n_finalists * plan.factor ** (len(budgets) - 1 - j))
        field.sort(key=lambda row: (-len(row.rungs), -row.score))  # promoted programs first
        field = list(dict.fromkeys(field[:size] + protected))
        evaluator.promote([row.program for row in field], budget, plan.final_seeds if j == len(budgets) - 1 else 1)
        n_resources.append(int(field[0].last.n_resources))
        n_candidates.append(len(field))
        field = [row for row in field if row.status == "ok"]
        protected = [row for row in protected if row.status == "ok"]
    return n_resources, n_candidates


@dataclass(frozen=True)
class Selection:
    """What the final selection chose: the winning ``row``, the rate ``lr`` and the ``split_scores`` it was
    chosen at, their mean ``score``, the ``contest`` (or None), and each rung's steps and candidates."""

    row: object
    lr: float
    split_scores: list
    score: float
    contest: dict | None
    n_resources: list
    n_candidates: list


def select(evaluator, plan, task, budgets, refit, margin, lr, neighbours):
    """The final selection after the genetic search: successive halving over ``budgets`` (the plan's rungs;
    none after an interruption), the winner, a ``refit`` callable's choice or else the contest with the best
    known loss at ``lr`` and the ``neighbours`` rates. Returns a :class:`Selection`."""
    n_resources, n_candidates = successive_halving(evaluator, plan, budgets)
    rows = list(evaluator.rows.values())
    best = winner(rows, str(usual_loss(task).program_))
    split_scores, contest = best.last.scores, None
    if callable(refit):
        best = rows[refit_choice(refit, rows, len(evaluator.splits))]
        split_scores = best.last.scores
    elif best.status == "ok":
        outcome = contest_at_rates(evaluator, rows, evaluator.config.seed_programs, margin,
                                   plan.final if budgets else None, plan.final_seeds, lr, neighbours)
        if outcome is not None:
            best, lr, split_scores, contest = outcome
    score = float(np.mean(split_scores if best.status == "ok" else best.last.scores))
    return Selection(best, lr, split_scores, score, contest, n_resources, n_candidates)


def margin_of(margin, differences):
    """The margin a paired per-fold score difference must exceed: ``"se"`` is its standard error, else ``margin``."""
    if margin != "se":
        return float(margin)
    d = np.asarray(differences, dtype=float)
    return float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def beats(challenger, champion, margin):
    """Whether per-fold scores ``challenger`` beat ``champion`` by more than the margin, and by how much.

    Returns ``(verdict, mean difference, margin)``; the difference is paired per fold.
    """
    d = np.asarray(challenger, dtype=float) - np.asarray(champion, dtype=float)
    if not np.all(np.isfinite(d)):
        return False, math.nan, math.nan
    need = margin_of(margin, d)
    # Beyond the margin, not at it: with one fold better and the others tied the mean is exactly one
    # standard error, which rounding must not tip either way.
    return bool(d.mean() > need + 1e-12), float(d.mean()), need


def winner(rows, usual_program):
    """The best row (the first rank of :func:`~metaloss_sk.results.ranking`).

    If every program failed but the usual loss only scored at chance level,
    the usual loss, with a warning: no loss can be told better than it.
    :func:`contest_at_rates` then decides between the best evolved program
    and the best known loss.

    Raises
    ------
    RuntimeError
        If every program failed otherwise, with the count of each failure and
        what to do.
    """
    rows = list(rows)
    best = rows[int(np.argmin(ranking(rows)))] if rows else None
    if best is not None and math.isfinite(best.score):
        return best
    usual = next((row for row in rows if str(row.program) == usual_program), None)
    statuses = [row.status for row in rows]
    diverged = (f" {statuses.count('nan')} candidate(s) diverged: their training loss or score became NaN or "
                "infinite, a sign that lr is too high: lower it." if "nan" in statuses else "")
    if usual is not None and usual.status == "chance":
        warnings.warn(
            "no candidate loss scored better than chance on every fold, the usual loss included, so none "
            "can be told better than it: best_loss_ is the usual loss. The net probably does not learn "
            "within its budget: train longer (max_epochs, schedule=Schedule(min_resources=...)) or raise lr."
            f"{_TOO_HIGH}{diverged}",
            UserWarning, stacklevel=5)
        return usual
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    hint = (" Scores at chance level mean the net does not learn within its budget, even with the usual "
            f"loss: train longer (max_epochs, schedule=Schedule(min_resources=...)) or raise lr.{_TOO_HIGH}"
            if "chance" in statuses else "")
    raise RuntimeError(f"every candidate loss failed to train ({counts}); see cv_results_['status'] and "
                       f"['message'] (error_score='raise' raises the first error).{hint}{diverged}")


def contest_at_rates(evaluator, rows, seed_programs, margin, budget, n_seeds, lr, neighbours=()):
    """The final contest: the best evolved program against the best seed program (known loss).

    The contenders are the best of each at the highest rung. Each also
    trains at ``budget`` with ``n_seeds`` weight seeds per fold at every
    rate of ``neighbours`` (the rates beside ``lr``, the one the search ran
    at; none: ``evaluator`` is not used) and takes the rate it scores best at,
    as a practitioner who tries a loss would tune its rate. The evolved
    program wins only by more than ``margin`` in the paired per-fold
    difference of their scores (see :func:`beats`): the best CV score among
    many programs is optimistic (the winner's curse), and the margin keeps a
    known loss unless an evolved one is better beyond the noise.

    Returns ``(row, its rate, its split scores, contest)``, or None when
    either contender is missing.
    """
    rows = [row for row in rows if math.isfinite(row.score) and not row.equivalent_to]
    if not rows:
        return None
    top = max(len(row.rungs) for row in rows)
    rows = [row for row in rows if len(row.rungs) == top]
    seeds = set(seed_programs)
    evolved = max((row for row in rows if str(row.program) not in seeds), key=lambda row: row.score, default=None)
    known = max((row for row in rows if str(row.program) in seeds), key=lambda row: row.score, default=None)
    if evolved is None or known is None:
        return None
    contenders = []
    for row in (evolved, known):
        scores = {lr: list(row.last.scores)}
        for other in neighbours:
            (folds,) = evaluator.cross_validate([evaluator.candidate(row)], budget, n_seeds, params={"lr": other})
            split, mean = _mean_scores(folds)
            if math.isfinite(mean):
                scores[other] = split
        best = max(scores, key=lambda rate: np.mean(scores[rate]))
        contenders.append((row, best, scores[best], {rate: float(np.mean(v)) for rate, v in scores.items()}))
    (challenger, c_lr, c_scores, c_all), (champion, k_lr, k_scores, k_all) = contenders
    replaced, difference, need = beats(c_scores, k_scores, margin)
    contest = {"champion": str(champion.program), "champion_lr": k_lr, "champion_scores": k_all,
               "challenger": str(challenger.program), "challenger_lr": c_lr, "challenger_scores": c_all,
               "difference": difference, "margin": need, "replaced": replaced}
    return (challenger, c_lr, c_scores, contest) if replaced else (champion, k_lr, k_scores, contest)


def neighbour_rates(grid, lr):
    """The rates of ``grid`` (sorted) just below and just above ``lr``, where it has them."""
    grid = sorted(grid)
    if lr not in grid:
        return []
    i = grid.index(lr)
    return [grid[j] for j in (i - 1, i + 1) if 0 <= j < len(grid)]


def learning_rates(baseline_lrs, net_lr):
    """The learning-rate grid: the net's, and the grid ``baseline_lrs`` asks for."""
    if baseline_lrs is None:
        return [net_lr]
    if isinstance(baseline_lrs, str):  # "auto"
        return sorted({net_lr, *(net_lr * f for f in LR_FACTORS)})
    return sorted({net_lr, *map(float, baseline_lrs)})


def _mean_scores(folds):
    """Per fold the mean over its weight seeds, and the mean over folds (NaN if any failed)."""
    splits = [float(np.mean([r.score for r in fold])) for fold in folds]
    failed = any(r.status != "ok" for fold in folds for r in fold)
    return splits, math.nan if failed else float(np.mean(splits))


def usual_baseline(evaluator, plan, task, baseline_lrs, net_lr):
    """The usual loss over the learning rates of ``baseline_lrs``, tuned (``baseline_``'s first part).

    ``evaluator`` trains at the net's own learning rate ``net_lr`` unless told another.
    """
    return tune_learning_rate(evaluator, usual_loss(task), plan, learning_rates(baseline_lrs, net_lr), net_lr)


def search_rate(baseline, net_lr):
    """``search_lr="tuned"``: the usual loss's best rate in ``baseline``, or ``net_lr`` (with a warning) if it
    failed at every rate."""
    if baseline["tuned_lr"] is None:
        warnings.warn("search_lr='tuned': the usual loss failed at every learning rate of baseline_lrs; "
                      "the search runs at the net's own learning rate.", UserWarning, stacklevel=3)
        return float(net_lr)
    return float(baseline["tuned_lr"])


def known_scores(evaluator, seed_names):
    """The seed programs at the final budget and the search's learning rate: ``baseline_["known_losses"]``."""
    out = []
    for program in evaluator.config.seed_programs:
        row = evaluator.rows.get(program)
        row = row and (evaluator.rows.get(row.equivalent_to) or row)
        if row is None or row.last is None:
            continue
        out.append({"name": seed_names.get(program, program), "program": program,
                    "n_resources": int(row.last.n_resources), "mean_test_score": row.score,
                    "split_scores": [float(v) for v in row.last.scores]})
    return out


def refit_choice(refit, rows, n_splits):
    """The row a callable ``refit`` picks from ``cv_results_``, checked."""
    index = refit(cv_results(rows, n_splits))
    if isinstance(index, bool) or not isinstance(index, Integral) or not 0 <= index < len(rows):
        raise ValueError(f"refit={refit!r} returned {index!r}; a refit callable must return a row "
                         f"index of cv_results_ (0 to {len(rows) - 1}).")
    if not math.isfinite(rows[index].score):
        raise ValueError(f"refit={refit!r} chose row {index} ({rows[index].program}), whose status is "
                         f"{rows[index].status!r}; choose a row with a finite mean_test_score.")
    return int(index)


def tune_learning_rate(evaluator, usual, plan, lrs, net_lr, n_final=2):
    """The usual loss over the learning rates ``lrs`` at the final budget, by successive halving over seeds.

    Every rate trains with one weight seed per fold; the best ``n_final``
    and the net's own rate then train with ``final_seeds`` (the first seed's
    nets are not trained again), as ``HalvingGridSearchCV`` does with a
    resource: here the seeds, not the steps, because a rate judged on a
    shorter budget favours the rates that learn fast early (on digits a
    third of the budget ranked lr 0.316 fifth of nine; at the whole budget
    it was the best). The tuned rate is the best at the last rung.
    See ``baseline_``.
    """
    budget, n_seeds = plan.final, plan.final_seeds
    ladder, splits, scores = [], {}, {}
    for j, seeds in enumerate(dict.fromkeys([1, n_seeds])):
        field = list(lrs)
        if j:
            alive = sorted((lr for lr in lrs if math.isfinite(scores[lr])), key=lambda lr: -scores[lr])
            field = sorted(set(alive[:n_final]) | ({net_lr} if math.isfinite(scores[net_lr]) else set()))
        for lr in field:
            (folds,) = evaluator.cross_validate([usual], budget, seeds, params=None if lr == net_lr else {"lr": lr})
            splits[lr], scores[lr] = _mean_scores(folds)
        ladder.append({"n_seeds": seeds, "lrs": list(field), "mean_test_score": [scores[lr] for lr in field]})
    final = ladder[-1]
    finite = [lr for lr in final["lrs"] if math.isfinite(scores[lr])]
    tuned = max(finite, key=lambda lr: scores[lr]) if finite else None
    here = net_lr in final["lrs"]
    return {
        "program": str(usual.program_), "n_resources": plan.steps(budget),
        "n_seeds": int(n_seeds), "lrs": final["lrs"], "mean_test_score": final["mean_test_score"], "ladder": ladder,
        "net_lr": net_lr, "net_lr_score": scores[net_lr] if here else math.nan,
        "net_lr_split_scores": splits[net_lr] if here else None,
        "tuned_lr": tuned, "tuned_score": math.nan if tuned is None else scores[tuned],
        "tuned_split_scores": None if tuned is None else splits[tuned],
    }


def local_search_winners(evaluator, plan, settings, margin, on_all_rows):
    """The local search on the ``settings.top_k`` best programs, judged at the final budget.

    Each program first gets its own score at the final budget with
    ``final_seeds`` weight seeds per fold, if it has none; its local search
    runs on every fold (checkpoints validated at the final budget: the local
    search answers to what the net trains for), the refined losses are
    rescored the same way, and a refined loss is kept only where it beats its
    program by more than ``margin``; ``on_all_rows(settings, loss)`` then
    learns its coefficients on all the rows. Returns ``refine_results_``,
    one dict per program, with ``"loss"`` (the kept loss, or None) and
    ``"split_scores"`` (the refined loss's per fold).
    """
    budget, n_seeds = plan.final, plan.final_seeds
    rows = [evaluator.rows[entry["program"]] for entry in hall_of_fame(evaluator.rows.values(), settings.top_k)]
    start = time.perf_counter()
    for row in rows:
        if row.last.n_resources != plan.steps(budget) or row.last.n_seeds != n_seeds:
            evaluator.promote([row.program], budget, n_seeds)
    learned = evaluator.cross_validate([row.loss for row in rows], budget, local_search=settings,
                                      local_search_budget=budget)
    refined = [[row.loss if fold[0].coefficients is None else row.loss.with_coefficients(fold[0].coefficients)
                for fold in folds] for row, folds in zip(rows, learned)]
    rescored = evaluator.cross_validate(refined, budget, n_seeds)
    elapsed = time.perf_counter() - start
    out = []
    for row, losses, folds in zip(rows, refined, rescored):
        split_scores, after = _mean_scores(folds)
        kept, difference, need = beats(split_scores, row.last.scores, margin)
        loss = on_all_rows(settings, row.loss) if kept else None
        out.append({
            "program": str(row.program), "score_before": row.score, "score_after": after, "kept": kept,
            "difference": difference, "margin": need,
            "coefficients": None if loss is None else loss.get_params()["coefficients"],
            "fold_coefficients": [refined_loss.get_params()["coefficients"] for refined_loss in losses],
            "time": elapsed / max(len(rows), 1), "loss": loss, "split_scores": split_scores,
        })
    return out


def simplest_within_one_se(cv_results):
    """The simplest loss whose score is within one standard error of the best: a ``refit`` callable.

    ``LossSearchCV(net, refit=simplest_within_one_se)`` picks, among the
    programs measured at the highest budget any reached (the final rung), the
    shortest (fewest nodes; the higher score among equals) whose mean CV
    score is at least the best mean there less the best's standard error
    (its standard deviation over the folds / sqrt(number of folds)). Use it
    when a shorter formula that is as good within the CV noise is worth more
    than the last bit of score: it is easier to read, and often transfers
    better. Raise ``n_finalists`` to give it more programs to choose from.

    Parameters
    ----------
    cv_results : dict
        ``LossSearchCV.cv_results_``.

    Returns
    -------
    int
        The chosen row of ``cv_results``.
    """
    scores = np.asarray(cv_results["mean_test_score"], dtype=float)
    n_splits = sum(key.startswith("split") and key.endswith("_test_score") for key in cv_results)
    reached = np.asarray(cv_results["iter"])
    top = np.isfinite(scores) & (reached == reached[np.isfinite(scores)].max(initial=0))
    if not top.any():
        raise ValueError("no program has a finite score; simplest_within_one_se has nothing to choose from.")
    best = int(np.flatnonzero(top)[np.argmax(scores[top])])
    std = float(np.asarray(cv_results["std_test_score"], dtype=float)[best])
    threshold = scores[best] - (std / math.sqrt(max(n_splits, 1)) if math.isfinite(std) else 0.0)
    lengths = np.asarray(cv_results["length"])
    return int(min(np.flatnonzero(top & (scores >= threshold)), key=lambda i: (lengths[i], -scores[i])))
