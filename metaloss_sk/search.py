"""LossSearchCV: evolve a symbolic loss for a skorch net, scored by cross-validation.

This module holds the estimator's surface and the order of a search's phases
(:meth:`LossSearchCV.fit`): check the settings and the data, tune the usual
loss's learning rate, evolve, select at the final budget, refit. What each
phase does lives elsewhere: :mod:`~metaloss_sk.inputs` (data),
:mod:`~metaloss_sk.schedule` (budgets), :mod:`~metaloss_sk.evolution` (which
programs), :mod:`~metaloss_sk.evaluator` (their scores),
:mod:`~metaloss_sk.final_selection` (the winner), :mod:`~metaloss_sk.results`
(what is reported) and :mod:`~metaloss_sk.checkpoint` (resuming).
"""

import os
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import check_is_fitted

from . import final_selection as final
from . import results
from ._validation import HasMethods, InstanceOf, Interval, Numbers, Options, check
from .checkpoint import SearchState, check_writable, load_checkpoint, save_checkpoint, search_signature
from .evaluator import Evaluator, EvaluatorConfig
from .evolution import Evolution, Stopping, evolve, initial_population
from .fit_and_score import FitAndScore, local_search_on_all_rows
from .fitted import FittedSearchMixin
from .inputs import Inputs, net_of, scorers
from .local_search import LocalSearch
from .progress import Progress
from .schedule import Schedule
from .training import Trainer, build_net, uses_fast_loop
from .zoo import seed_programs

__all__ = ["LossSearchCV"]


class LossSearchCV(FittedSearchMixin, MetaEstimatorMixin, BaseEstimator):
    """Search for a loss function for a skorch net by genetic programming (EvoMAL).

    Each candidate loss is a symbolic program over the target ``y`` and the
    prediction ``yhat`` (:class:`~metaloss_sk.SymbolicLoss`); its fitness is
    the CV score of the net trained with it for a short budget, every
    candidate from the same seeded initialisations and batch orders. The best
    programs then climb rungs of growing budget up to the net's own
    (successive halving), where the winner must beat the best known loss by
    more than ``margin``; the net is refit with it. See the user guide's "How
    a search works".

    Parameters
    ----------
    estimator : skorch NeuralNetClassifier, NeuralNetBinaryClassifier or NeuralNetRegressor, or Pipeline
        The net (or a Pipeline ending in one) whose loss is searched; its
        settings are honoured, its ``max_epochs`` is the final budget, its
        criterion is replaced by each candidate. ``train_split`` must be None.
    generations : int, default=50
        Maximum number of generations.
    evolution : Evolution or None, default=None
        The genetic programming's settings (:class:`Evolution`); None is
        EvoMAL's. ``evolution__*`` in a grid.
    schedule : Schedule or None, default=None
        The training budgets (:class:`Schedule`). ``schedule__*`` in a grid.
    local_search : None, "all", "winners" or LocalSearch, default=None
        EvoMAL's local search (:class:`LocalSearch`): None is plain GP;
        "all" refines every candidate before its fitness; "winners" refines
        the best programs after the final selection.
    seed_programs : "auto", "usual" or sequence of str, default="auto"
        Programs in the first generation, always among the finalists:
        "auto" is the usual loss and the well-known ones
        (:func:`~metaloss_sk.zoo.known_losses`), "usual" the usual loss.
    hall_of_fame : int, default=10
        Number of best distinct programs kept in ``hall_of_fame_``.
    baseline_lrs : "auto", sequence of float or None, default="auto"
        Learning rates the usual loss is tuned over by CV: "auto" is the
        net's lr times 10^-2 to 10^2 in half decades; None the net's lr only.
    search_lr : {"tuned", "net"}, default="tuned"
        The rate candidates train at: the usual loss's tuned rate, or the
        net's own.
    margin : "se" or float, default="se"
        How much an evolved program must beat the best seed program by (mean
        paired per-fold difference) to become ``best_loss_``; "se" is that
        difference's standard error. The same rule judges every local search.
    standardize_target : bool, default=True
        Regression: train on standardised targets and map predictions back.
    max_time : float or None, default=None
        Stop the genetic search after the generation during which this many
        seconds passed.
    n_iter_no_change : int or None, default=None
        Stop after this many generations without a better best score.
    max_evaluations : int or None, default=None
        Stop after this many distinct programs have been trained.
    train_loop : {"auto", "fast", "skorch"}, default="auto"
        "fast" trains candidates in a tight loop that honours the net's
        configuration, "skorch" calls ``net.fit``; "auto" is "fast" unless
        the net has callbacks or overrides it cannot honour.
    candidates_per_task : int, default=8
        Candidates one parallel task trains together on a fold.
    checkpoint : str, path or None, default=None
        A JSON file written after every generation; ``fit`` resumes from it
        and ends as an uninterrupted run would have.
    scoring : str, callable, list, tuple, dict or None, default=None
        As in ``GridSearchCV``; None uses the estimator's ``score``.
    cv : int, cross-validation generator or iterable, default=3
        As in ``GridSearchCV``; the folds are computed once per fit.
    refit : bool, str or callable, default=True
        As in ``GridSearchCV``: refit the net with the best loss; the metric
        that selects; or a callable choosing a row of ``cv_results_``
        (:func:`~metaloss_sk.simplest_within_one_se`).
    n_jobs : int or None, default=None
        Candidates trained in parallel through joblib; results do not depend on it.
    verbose : int, default=0
        1 prints a line per generation, 2 also the hall of fame.
    error_score : "raise" or float, default=np.nan
        Score recorded when a candidate fails; "raise" re-raises errors.
    random_state : int, RandomState or None, default=None
        Seeds the evolution, the initialisations and the batch orders.

    Attributes
    ----------
    best_loss_ : SymbolicLoss
        The winner, chosen at the final budget.
    best_score_ : float
        Its mean CV score there, at ``best_lr_``.
    best_params_ : dict
        ``best_loss_.as_params()``, for ``net.set_params(**best_params_)``.
    best_index_ : int
        Its row in ``cv_results_``.
    best_estimator_ : estimator
        The net refit with ``best_loss_`` at ``best_lr_`` (``refit=True``).
    search_lr_, best_lr_ : float
        The rate the search ran at, and the rate ``best_loss_`` was chosen at.
    baseline_ : dict or None
        The usual loss over the rates, every known loss and the final
        contest, on the finalists' folds and seeds.
    cv_results_ : dict of arrays
        One row per distinct program.
    n_resources_, n_candidates_ : list of int
        Training steps per net, and programs trained, at each rung.
    hall_of_fame_, history_, search_stats_, refine_results_ : list or dict
        The best programs, one entry per generation, totals, and the local
        search of the winners. The user guide's "What a search returns"
        lists every key of these attributes.
    classes_, n_features_in_, feature_names_in_, scorer_
        As in ``GridSearchCV``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.datasets import load_iris
    >>> from skorch import NeuralNetClassifier
    >>> from metaloss_sk import Evolution, LossSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    >>> net = NeuralNetClassifier(torch.nn.Linear, module__in_features=4, module__out_features=3,
    ...                           max_epochs=10, lr=0.1, train_split=None, verbose=0)
    >>> search = LossSearchCV(net, generations=2, evolution=Evolution(population_size=6), random_state=0)
    >>> search.fit(X, y).best_loss_.task
    'multiclass'
    """

    _parameter_constraints = {
        "estimator": [HasMethods(("fit", "get_params"))],
        "generations": [Interval(Integral, 1)],
        "evolution": [InstanceOf(Evolution), None],
        "schedule": [InstanceOf(Schedule), None],
        "local_search": [Options(("all", "winners")), InstanceOf(LocalSearch), None],
        "seed_programs": [Options(("auto", "usual")), InstanceOf((list, tuple))],
        "hall_of_fame": [Interval(Integral, 1)],
        "baseline_lrs": [Options(("auto",)), Numbers(low=0), None],
        "search_lr": [Options(("net", "tuned"))],
        "margin": [Options(("se",)), Interval(Real, 0)],
        "standardize_target": [Options((True, False))],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1), None],
        "max_evaluations": [Interval(Integral, 1), None],
        "train_loop": [Options(("auto", "fast", "skorch"))],
        "candidates_per_task": [Interval(Integral, 1)],
        "checkpoint": [InstanceOf((str, os.PathLike)), None],
        "scoring": [InstanceOf((str, list, tuple, set, dict, Callable)), None],
        "cv": [Interval(Integral, 2), HasMethods(("split",)), InstanceOf((list, tuple)), None],
        "refit": [Options((True, False)), InstanceOf(str), InstanceOf(Callable)],
        "n_jobs": [Interval(Integral), None],
        "verbose": [Interval(Integral, 0)],
        "error_score": [Options(("raise",)), Interval(Real)],
        "random_state": [Interval(Integral, 0, 2**32 - 1), InstanceOf(np.random.RandomState), None],
    }

    def __init__(
        self, estimator, *, generations=50, evolution=None, schedule=None, local_search=None, seed_programs="auto",
        hall_of_fame=10, baseline_lrs="auto", search_lr="tuned", margin="se", standardize_target=True,
        max_time=None, n_iter_no_change=None, max_evaluations=None, train_loop="auto", candidates_per_task=8,
        checkpoint=None, scoring=None, cv=3, refit=True, n_jobs=None, verbose=0, error_score=np.nan,
        random_state=None,
    ):
        self.estimator = estimator
        self.generations = generations
        self.evolution = evolution
        self.schedule = schedule
        self.local_search = local_search
        self.seed_programs = seed_programs
        self.hall_of_fame = hall_of_fame
        self.baseline_lrs = baseline_lrs
        self.search_lr = search_lr
        self.margin = margin
        self.standardize_target = standardize_target
        self.max_time = max_time
        self.n_iter_no_change = n_iter_no_change
        self.max_evaluations = max_evaluations
        self.train_loop = train_loop
        self.candidates_per_task = candidates_per_task
        self.checkpoint = checkpoint
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.error_score = error_score
        self.random_state = random_state

    def fit(self, X, y, **fit_params):
        """Run the search, choose the winner at the final budget, then refit the net with it.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or dict of arrays
            Training data, cast to float32; a dict (skorch's input for a
            module with several inputs, one array per argument of its
            ``forward``) is split and batched as skorch does, so per-row
            weights go here (the user guide's "Weighted rows").
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (any type; encoded internally, decoded by ``predict``)
            or regression targets.
        **fit_params
            Not supported (``TypeError``): skorch hands fit parameters to the
            module's ``forward`` whole, not per batch; per-row data goes in ``X``.

        Returns
        -------
        self : LossSearchCV
        """
        if fit_params:
            raise TypeError(
                f"LossSearchCV.fit takes no fit parameters, got {', '.join(sorted(fit_params))}: skorch passes "
                "them to the module's forward whole, not per batch. Per-row data goes in X, as a dict of arrays "
                "(skorch's way): X={'X': X, 'sample_weight': w}, with a module whose forward takes both and a "
                "net whose get_loss passes the weights to its criterion (docs/user_guide/data.md: Weighted rows).")
        start = time.perf_counter()
        # Phase 1: the settings and the data, checked; the budgets, worked out once.
        self._forget_fit()
        evolution, schedule, net = self._check_params()
        inputs = self._inputs = Inputs(self.estimator)
        X, y = inputs.fit(self, X, y)
        self.classes_ = inputs.classes_
        rng = check_random_state(self.random_state)
        splits = inputs.splits(self.cv, X, y)
        fold_seeds = rng.randint(np.iinfo(np.int32).max, size=len(splits))
        refit_seed = int(rng.randint(np.iinfo(np.int32).max))
        X_all, (X_folds, y_folds, splits) = inputs.net_rows(X, y), inputs.fold_rows(X, y, splits)
        inputs.preflight(X_all, y)
        self._seeds = seed_programs(self.seed_programs, inputs.task, inputs.n_classes)
        self._plan = schedule.plan(net, len(splits[0][0]), self._every_candidate_settings() is not None)
        signature = search_signature(self.get_params(deep=False), evolution, schedule, X_all, y)
        state = load_checkpoint(self.checkpoint, signature) if self.checkpoint is not None else None
        resumed = state is not None
        if state is None:
            population = initial_population(evolution.space(), evolution.population_size, list(self._seeds), rng,
                                            tuple(evolution.init_depth), evolution.init_method)
            state = SearchState(population=population, rng=rng, fold_seeds=[int(s) for s in fold_seeds],
                                refit_seed=refit_seed)
        self._state, self.history_ = state, state.history
        progress = Progress(self.verbose, evolution.population_size, self.generations, state.generation, start,
                            self.max_time)
        if resumed:
            progress.write(f"[LossSearchCV] resuming from {self.checkpoint} at generation {state.generation}")
        try:
            with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel:
                # Phase 2: the usual loss's learning rate, tuned at the final budget.
                baseline, self.search_lr_ = None, float(net.lr)
                if self.search_lr == "tuned":
                    evaluator = Evaluator(self._config(splits, net), X_folds, y_folds, splits, parallel)
                    baseline = final.usual_baseline(evaluator, self._plan, inputs.task, self.baseline_lrs,
                                                    float(net.lr))
                    self.search_lr_ = final.search_rate(baseline, net.lr)
                # Phase 3: the genetic search.
                evaluator = Evaluator(self._config(splits, self._search_net()), X_folds, y_folds, splits, parallel,
                                      progress=progress)
                if resumed:
                    state.restore(evaluator)
                stopping = Stopping(start, self.max_time, self.n_iter_no_change, self.max_evaluations)
                save = None if self.checkpoint is None else partial(save_checkpoint, self.checkpoint,
                                                                    signature=signature)
                interrupted = evolve(evaluator, evolution, state, self.generations, stopping, progress,
                                     self.hall_of_fame, save)
                progress.close()
                # Phase 4: the final selection, and the local search of the winners.
                self._select(evaluator, interrupted, X_all, y)
                if self.local_search is not None and self._local_search_settings().candidates == "winners":
                    self._local_search_winners(evaluator, X_all, y)
                self._finish(evaluator, time.perf_counter() - start)
                self.baseline_ = None
                if not interrupted:
                    baseline = baseline or final.usual_baseline(evaluator, self._plan, inputs.task,
                                                                self.baseline_lrs, float(net.lr))
                    names = {str(p): name for p, name in self._seeds.items()}
                    self.baseline_ = {**baseline, "found_split_scores": list(self._best_split_scores),
                                      "search_lr": self.search_lr_, "best_lr": self.best_lr_,
                                      "known_losses": final.known_scores(evaluator, names), "contest": self._contest}
        finally:
            progress.close()
        self._state.record(evaluator)
        # Phase 5: the refit.
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        for line in results.summary_lines(self.best_loss_, self.best_score_, self._best_split_scores,
                                          self.baseline_):
            progress.write(line)
        return self

    #: The private state a fit sets (beside its attributes ending in "_"); a new one belongs here too.
    _FITTED_STATE = ("_inputs", "_plan", "_scorer", "_other_scorers", "_state", "_best_split_scores", "_seeds",
                     "_contest")

    def _forget_fit(self):
        """Remove what an earlier ``fit`` or ``fit_refine`` left (fitted attributes and private state, such as
        ``refine_results_``, which ``_finish`` applies), so that a fit starts as on a fresh object.

        sklearn's own private attributes (a Pipeline's callback context, metadata requests) stay.
        """
        params = self.get_params(deep=False)
        for name in list(vars(self)):
            if name in self._FITTED_STATE or (name.endswith("_") and not name.startswith("_") and name not in params):
                delattr(self, name)

    def _config(self, splits, net):
        """The evaluator's settings: the net ``net`` (the estimator's, at the search's rate) and the plan."""
        evolution, task = self._evolution, self._inputs.task
        self._scorer, self._other_scorers, self.scorer_ = scorers(self.scoring, self.refit, self._net)
        evaluation = FitAndScore(
            trainer=Trainer(net, uses_fast_loop(self._net, self.train_loop)), task=task, scorer=self._scorer,
            other_scorers=self._other_scorers, error_score=self.error_score,
            standardize=task == "regression" and self.standardize_target,
            local_search=self._every_candidate_settings(), local_search_budget=self._plan.fitness,
            gradient_bound=evolution.gradient_bound)
        return EvaluatorConfig(
            evaluation=evaluation, fold_seeds=tuple(self._state.fold_seeds), plan=self._plan, n_jobs=self.n_jobs,
            candidates_per_task=self.candidates_per_task, equivalence=evolution.equivalence,
            rejection_steps=evolution.rejection_steps, gradient_bound=evolution.gradient_bound,
            seed_programs=tuple(str(p) for p in self._seeds))

    def _select(self, evaluator, interrupted, X, y):
        """The final selection (unless interrupted) and the best loss; ``X, y``: all rows, as the net sees them."""
        budgets = [] if interrupted else list(self._plan.rungs)
        grid = final.learning_rates(self.baseline_lrs, float(self._net.lr))
        tuned = budgets and self.search_lr == "tuned"
        try:
            chosen = final.select(evaluator, self._plan, self._inputs.task, budgets, self.refit, self.margin,
                                  self.search_lr_, final.neighbour_rates(grid, self.search_lr_) if tuned else [])
        except RuntimeError:
            self.cv_results_ = results.cv_results(list(evaluator.rows.values()), len(evaluator.splits))
            raise
        self.n_resources_, self.n_candidates_ = chosen.n_resources, chosen.n_candidates
        self.best_lr_, self._contest, best, loss = chosen.lr, chosen.contest, chosen.row, chosen.row.loss
        seeded = str(best.program) in evaluator.config.seed_programs
        if evaluator.config.evaluation.local_search is not None and best.status == "ok" and not seeded:
            loss = local_search_on_all_rows(evaluator.config.evaluation, loss, X, y, self._state.refit_seed)
        self._set_best(loss, chosen.score, chosen.split_scores)
        self.best_index_ = list(evaluator.rows.values()).index(best)

    def _search_net(self, lr=None):
        """The net the candidates train: the estimator's, at ``search_lr_`` (or ``lr``)."""
        lr = self.search_lr_ if lr is None else lr
        return self._net if lr == float(self._net.lr) else clone(self._net).set_params(lr=lr)

    def fit_refine(self, X, y, local_search=None):
        """Tune the coefficients of the best programs found (EvoMAL's local search), after :meth:`fit`.

        Each of the ``top_k`` best distinct programs gets one coefficient per
        edge, learned by unrolled differentiation on every fold's training
        rows, and is rescored at the final budget on the search's folds and
        seeds. A refined loss is kept only where it beats its program by more
        than ``margin``; the best loss, its score and the hall of fame follow
        (``refine_results_`` records what happened), and ``best_estimator_``
        is refit with ``refit=True``.

        Parameters
        ----------
        X, y : array-like
            The data ``fit`` was given.
        local_search : LocalSearch or None, default=None
            The local search's settings; None takes the search's own
            ``local_search`` if it is a :class:`LocalSearch`, else the defaults.

        Returns
        -------
        self : LossSearchCV
        """
        check_is_fitted(self, "cv_results_")
        self._check_params()
        check({"local_search": local_search}, {"local_search": [InstanceOf(LocalSearch), None]})
        if local_search is not None:
            local_search.check()
        X, y = self._inputs.transform(self, X, y)
        splits = self._inputs.splits(self.cv, X, y)
        if len(splits) != len(self._state.fold_seeds):
            raise ValueError(f"cv gave {len(splits)} splits, expected {len(self._state.fold_seeds)}.")
        X_folds, y_folds, splits = self._inputs.fold_rows(X, y, splits)
        with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel:
            evaluator = Evaluator(self._config(splits, self._search_net()), X_folds, y_folds, splits, parallel)
            self._state.restore(evaluator)
            self._local_search_winners(evaluator, self._inputs.net_rows(X, y), y, local_search)
            self._state.record(evaluator)
        if self.baseline_ is not None:
            self.baseline_["found_split_scores"] = list(self._best_split_scores)
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        return self

    def _every_candidate_settings(self):
        """The local search every candidate gets before its fitness (EvoMAL), or None."""
        settings = self._local_search_settings()  # None's and "winners"' are candidates="winners"
        return settings if settings.candidates == "all" else None

    def _local_search_settings(self):
        return self.local_search if isinstance(self.local_search, LocalSearch) else LocalSearch(
            candidates="winners" if self.local_search in (None, "winners") else "all")

    def _local_search_winners(self, evaluator, X, y, settings=None):
        """The local search on the best programs at the final budget; improvements kept, the best loss updated."""
        evaluation = evaluator.config.evaluation

        def on_all_rows(settings, loss):
            settings = replace(evaluation, local_search=settings, local_search_budget=self._plan.final)
            return local_search_on_all_rows(settings, loss, X, y, self._state.refit_seed)

        outcomes = final.local_search_winners(evaluator, self._plan, settings or self._local_search_settings(),
                                              self.margin, on_all_rows)
        self.refine_results_ = [{k: v for k, v in r.items() if k not in ("loss", "split_scores")} for r in outcomes]
        for r in outcomes:
            same = r["program"] == str(self.best_loss_.program_)
            if r["kept"] and (same or final.beats(r["split_scores"], self._best_split_scores, self.margin)[0]):
                self._set_best(r["loss"], r["score_after"], r["split_scores"])
            tag = " (kept)" if r["kept"] else ""
            Progress(self.verbose, 0, 0, 0, 0, None).write(
                f"[LossSearchCV] local search {r['program']}: {r['score_before']:.4f} -> {r['score_after']:.4f}{tag}")
        if hasattr(self, "hall_of_fame_"):
            self._finish(evaluator, self.search_stats_["time"])

    def _finish(self, evaluator, elapsed):
        rows = list(evaluator.rows.values())
        self.cv_results_ = results.cv_results(rows, len(evaluator.splits))
        self.hall_of_fame_ = results.hall_of_fame(rows, self.hall_of_fame, getattr(self, "refine_results_", ()))
        meta_steps = self._local_search_settings().meta_steps if evaluator.config.evaluation.local_search else 0
        self.search_stats_ = results.search_stats(self.history_, evaluator.totals, len(evaluator.splits), elapsed,
                                                  meta_steps)
        self.search_stats_["train_loop"] = evaluator.config.evaluation.trainer.loop(evaluator.X)

    def _set_best(self, loss, score, split_scores):
        self.best_loss_ = loss
        self.best_score_ = float(score)
        self.best_params_ = loss.as_params()
        self._best_split_scores = [float(s) for s in split_scores]

    def _check_params(self):
        """Check every setting (nested ones too) by the constraint table; ``(evolution, schedule, net)``."""
        check(self.get_params(deep=False), self._parameter_constraints)
        for nested in (self._evolution, self._schedule, self.local_search):
            if hasattr(nested, "check"):
                nested.check()
        Inputs(self.estimator).check_net()
        if self.checkpoint is not None:
            check_writable(self.checkpoint)
        return self._evolution, self._schedule, self._net

    @property
    def _net(self):
        """The skorch net: the estimator, or the last step of a Pipeline."""
        return net_of(self.estimator)

    @property
    def _evolution(self):
        return Evolution() if self.evolution is None else self.evolution

    @property
    def _schedule(self):
        return Schedule() if self.schedule is None else self.schedule

    def _refit(self, X, y):
        """``best_estimator_``: the net (after the Pipeline's steps, if any) trained with ``best_loss_``."""
        net = build_net(self._search_net(self.best_lr_), self.best_loss_, verbose=self._net.verbose,
                        train_split=self._net.train_split)
        torch.manual_seed(self._state.refit_seed)
        return self._inputs.around(net, self.standardize_target).fit(X, y)
