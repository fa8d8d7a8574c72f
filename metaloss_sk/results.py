"""A search's results, assembled by pure functions from the evaluator's rows (as scikit-learn's ``_format_results``).

Nothing here trains or changes anything: :func:`cv_results`, :func:`hall_of_fame`
and :func:`search_stats` turn the :class:`~metaloss_sk.records.Row` records,
the per-generation history and the evaluator's totals into the fitted
attributes of :class:`~metaloss_sk.LossSearchCV`, and the ``*_line`` functions
into what ``verbose`` prints. Values are plain Python or NumPy arrays.
"""

import math

import numpy as np

__all__ = ["cv_results", "generation_line", "hall_of_fame", "ranking", "search_stats", "summary_lines"]

_HALL_OF_FAME_KEYS = ("program", "infix", "length", "depth", "generation", "mean_test_score", "std_test_score",
                      "n_resources")


def ranking(rows):
    """Dense ranks (1 is best): a program that reached a higher rung of budget ranks above one that did not.

    Within a rung, higher mean scores rank higher and ties share a rank;
    failures (and programs never trained) rank last.
    """
    keys = [(len(row.rungs), row.score) if math.isfinite(row.score) else (-1, -math.inf) for row in rows]
    order = {key: rank for rank, key in enumerate(sorted(set(keys), reverse=True), 1)}
    return np.array([order[key] for key in keys], dtype=np.int32)


def cv_results(rows, n_splits):
    """``cv_results_``: one entry per distinct program, its scores at the highest rung it reached.

    Columns: ``program``, ``infix``, ``length``, ``depth``, ``generation``,
    ``iter`` (the highest rung reached, 0 being the genetic search's fitness
    budget), ``n_resources`` (the training steps per net there),
    ``splitK_test_score``, ``mean_test_score``, ``std_test_score`` and
    ``mean_fit_time`` (at that rung), ``iterI_mean_test_score`` for every rung
    I (NaN where not reached), ``rank_test_score`` (see :func:`ranking`),
    ``status``, ``message``, ``equivalent_to`` and ``params`` (each loss as
    skorch parameters).
    """
    rows = list(rows)
    n_rungs = max((len(row.rungs) for row in rows), default=1)

    def at_last(get, default):
        return [get(row.last) if row.last is not None else default for row in rows]

    out = {
        "program": np.array([str(row.program) for row in rows], dtype=object),
        "infix": np.array([row.loss.infix() for row in rows], dtype=object),
        "length": np.array([row.program.length for row in rows], dtype=np.int64),
        "depth": np.array([row.program.depth for row in rows], dtype=np.int64),
        "generation": np.array([row.generation for row in rows], dtype=np.int64),
        "iter": np.array([max(len(row.rungs) - 1, 0) for row in rows], dtype=np.int64),
        "n_resources": np.array(at_last(lambda r: r.n_resources, 0), dtype=np.int64),
        "mean_test_score": np.array([row.score for row in rows], dtype=float),
        "std_test_score": np.array([row.last.std if row.last is not None and row.status == "ok" else np.nan
                                    for row in rows], dtype=float),
        "mean_fit_time": np.array(at_last(lambda r: r.fit_time, 0.0), dtype=float),
        "status": np.array([row.status for row in rows], dtype=object),
        "message": np.array([row.message for row in rows], dtype=object),
        "equivalent_to": np.array([row.equivalent_to for row in rows], dtype=object),
    }
    for k in range(n_splits):
        out[f"split{k}_test_score"] = np.array(at_last(lambda r, k=k: r.scores[k], np.nan), dtype=float)
    names = dict.fromkeys(name for row in rows if row.last is not None for name in row.last.other_scores)
    for name in names:  # multi-metric scoring: the other metrics at the same rung
        per_fold = [row.last.other_scores.get(name) if row.last is not None else None for row in rows]
        per_fold = np.array([[np.nan] * n_splits if v is None else v for v in per_fold], dtype=float)
        for k in range(n_splits):
            out[f"split{k}_test_{name}"] = per_fold[:, k]
        ok = np.array([row.status == "ok" for row in rows])  # as mean_test_score: NaN for a failure
        out[f"mean_test_{name}"] = np.where(ok, per_fold.mean(axis=1), np.nan)
        out[f"std_test_{name}"] = np.where(ok, per_fold.std(axis=1), np.nan)
    for i in range(n_rungs):
        out[f"iter{i}_mean_test_score"] = np.array(
            [row.rungs[i].mean if len(row.rungs) > i else np.nan for row in rows], dtype=float)
    out["rank_test_score"] = ranking(rows)
    out["params"] = [row.loss.as_params() for row in rows]
    return out


def hall_of_fame(rows, size, refined=()):
    """The ``size`` best distinct programs (equivalent ones left out), best first, as plain dicts.

    ``refined`` (``refine_results_``): a program whose refined loss was kept
    shows that loss's score and coefficients.
    """
    rows = [row for row in rows if not row.equivalent_to and math.isfinite(row.score)]
    ranks = ranking(rows)
    best = [rows[i] for i in np.argsort(ranks, kind="stable")[:size]]
    entries = [{"program": str(row.program), "infix": row.loss.infix(), "length": int(row.program.length),
                "depth": int(row.program.depth), "generation": int(row.generation), "mean_test_score": row.score,
                "std_test_score": row.last.std, "n_resources": int(row.last.n_resources)} for row in best]
    kept = {r["program"]: r for r in refined if r["kept"]}
    for entry in entries:
        if entry["program"] in kept:
            entry.update(mean_test_score=kept[entry["program"]]["score_after"],
                         coefficients=kept[entry["program"]]["coefficients"])
    return entries


def search_stats(history, totals, n_splits, elapsed, meta_steps=0):
    """``search_stats_``: what the search did, in totals.

    ``meta_steps`` is the number of meta steps of one local search run on
    every candidate trained at the fitness budget and fold (0 without).
    """
    stats = {
        "generations": len(history),
        "proposed": sum(h["proposed"] for h in history),
        "evaluations": totals["trained"],
        "promoted": totals["promoted"],
        "fold_fits": totals["fold_fits"] + totals["ladder_fits"],
        "cache_hits": totals["cache_hits"],
        "equivalent": totals["equivalent"],
        "rejected": totals["rejected"],
        "failures": totals["failures"],
        "meta_steps": totals["promoted"] * n_splits * meta_steps,
        "meta_nan_steps": totals["meta_nan_steps"],
        "filter_time": totals["filter_time"],
        "train_time": totals["train_time"],
        "fit_time": totals["fit_time"],
        "local_search_time": totals["local_search_time"],
        "ladder_fits": totals["ladder_fits"],
        "ladder_time": totals["ladder_time"],
        "time": elapsed,
    }
    return stats


def generation_line(entry, generations, max_time=None):
    """The verbose line of one generation of the genetic search.

    Its eta assumes every generation runs, capped by what ``max_time``
    leaves (the search stops after the generation during which it passed).
    """
    done = entry["generation"] + 1
    eta = entry["elapsed"] / done * max(generations - done, 0)
    if max_time is not None:
        eta = min(eta, max(max_time - entry["elapsed"], 0.0))
    return (f"[LossSearchCV] gen {entry['generation']:>3}  best {entry['best_score']:.4f}  "
            f"median {entry['median_score']:.4f}  trained {entry['trained']:>3}  "
            f"promoted {entry.get('promoted', entry['trained']):>3}  "
            f"cache hits {entry['cache_hits']:>3}  equivalent {entry['equivalent']:>3}  "
            f"rejected {entry['rejected']:>3}  failures {entry['failures']:>3}  "
            f"elapsed {entry['elapsed']:7.1f}s  eta {eta:7.1f}s")


def summary_lines(best_loss, best_score, best_split_scores, baseline):
    """The verbose summary: the found loss beside the usual loss (at the net's and the tuned learning rate) and
    the known losses, and why ``best_loss_`` is what it is.

    ``baseline`` is ``LossSearchCV.baseline_`` (or None): every figure is at
    the final budget, on the same folds and weight seeds, and the paired
    differences are per fold (found loss minus the other).
    """
    lines = [f"[LossSearchCV] best loss: {best_loss}  (score {best_score:.4f})"]
    if baseline is None:
        return lines
    found = np.asarray(best_split_scores, dtype=float)

    def row(name, scores):
        scores = np.asarray(scores, dtype=float)
        differences = " ".join(f"{d:+.4f}" for d in found - scores)
        return f"    {name:<34} {np.mean(scores):.4f}   found loss - it, per fold: {differences}"

    lines.append(f"    at the final budget ({baseline['n_resources']} steps, {baseline['n_seeds']} weight "
                 f"seed(s) per fold), mean CV score:")
    best_lr = baseline.get("best_lr")
    lines.append(f"    {'found loss' + ('' if best_lr is None else f', lr {best_lr:g}'):<34} {np.mean(found):.4f}")
    if baseline["net_lr_split_scores"] is not None:
        lines.append(row(f"usual loss, lr {baseline['net_lr']:g}", baseline["net_lr_split_scores"]))
    if baseline["tuned_lr"] is not None:
        lines.append(row(f"usual loss, tuned lr {baseline['tuned_lr']:g}", baseline["tuned_split_scores"]))
    search_lr = baseline.get("search_lr")
    for known in baseline.get("known_losses", [])[1:]:
        lines.append(row(f"{known['name']}, lr {search_lr:g}", known["split_scores"]))
    contest = baseline.get("contest")
    names = {k["program"]: k["name"] for k in baseline.get("known_losses", [])}
    if contest is not None:
        champion = names.get(contest["champion"], contest["champion"])
        if "champion_lr" in contest:
            champion += f" at lr {contest['champion_lr']:g}"
        verdict = (f"an evolved program, better than the best known loss ({champion}) by "
                   f"{contest['difference']:+.4f} > margin {contest['margin']:.4f}" if contest["replaced"] else
                   f"the best known loss, {champion}: the best evolved program beat it by "
                   f"{contest['difference']:+.4f}, not more than the margin {contest['margin']:.4f}")
        lines.append(f"    best_loss_ is {verdict}")
    elif str(best_loss.program_) in names:
        lines.append(f"    best_loss_ is the best known loss, {names[str(best_loss.program_)]}: no evolved "
                     "program scored higher")
    return lines
