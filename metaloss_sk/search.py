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
import warnings
from collections.abc import Callable
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import check_is_fitted

from . import final_selection as final
from . import results
from ._validation import HasMethods, InstanceOf, Interval, Numbers, Options, check
from .checkpoint import SearchState, check_writable, load_checkpoint, save_checkpoint, signature
from .engine import Evaluation, refine_on
from .evaluator import Evaluator, EvaluatorConfig
from .evolution import Evolution, initial_population, next_generation
from .export import to_torch_source
from .inputs import Inputs, net_of, scorers, to_float32
from .local_search import LocalSearch
from .loss import SymbolicLoss, usual_loss
from .program import parse
from .progress import Progress
from .schedule import Schedule
from .training import Trainer, build_net, fast_path_blockers
from .zoo import known_losses

__all__ = ["LossSearchCV"]


def _estimator_has(attr):
    def check(self):
        return hasattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator, attr)
    return check


class LossSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Search for a loss function for a skorch net by genetic programming (EvoMAL).

    Each candidate loss is a symbolic program over the target ``y`` and the
    prediction ``yhat`` (see :class:`~metaloss_sk.SymbolicLoss`). Its fitness
    is the cross-validated score of the net trained with it for a short
    budget: on every fold, every candidate starts from the same seeded
    initialisation and sees the same batch order, so scores differ by the loss
    alone. Programs evolve with gplearn's variation operators, tournament
    selection and elitism.

    The winner is then chosen at the budget the net will train with: the best
    distinct programs climb rungs of growing training budget up to the net's
    own (successive halving, as in
    :class:`~sklearn.model_selection.HalvingGridSearchCV`), the field cut by
    ``factor`` at each rung, the usual loss always kept in it; the last rung
    trains every finalist with ``final_seeds`` weight seeds per fold, and a
    program that fails on any fold, seed or rung (a non-finite loss or score,
    or a score no better than chance) is out. The search starts from the
    usual loss and the losses a practitioner tries first (``seed_programs``),
    which always reach the last rung, and runs at the usual loss's learning
    rate tuned by CV (``search_lr``); the best program there is
    ``best_loss_``, an evolved one only where it beats the best known loss
    by more than ``margin``, each of the two at its own best rate beside the
    search's (``best_lr_``). ``baseline_`` shows the usual loss over the
    rates and every known loss on the same folds and seeds, and the net is
    refit with ``best_loss_`` at ``best_lr_`` on all the data.

    Parameters
    ----------
    estimator : skorch NeuralNetClassifier, NeuralNetBinaryClassifier or NeuralNetRegressor
        The net whose loss is searched. Its module, optimizer, ``lr``,
        ``batch_size``, ``max_epochs``, ``device`` and ``*__`` settings are
        honoured; its criterion is replaced by each candidate. Its
        ``max_epochs`` is the budget the winner is chosen at. Its
        ``train_split`` must be None (the search cross-validates by itself;
        skorch's default holds out 20 % of every fit, and is refused). Its
        module must give one output per class (one for
        ``NeuralNetBinaryClassifier``; one per target column for regression).
    generations : int, default=50
        Maximum number of generations.
    evolution : Evolution or None, default=None
        The genetic programming's settings (:class:`Evolution`: population,
        operators, function set, and which proposals are trained at all);
        None is ``Evolution()``, EvoMAL's. Its parameters are
        ``evolution__*`` in a grid (``evolution=Evolution()`` must be set
        for that).
    schedule : Schedule or None, default=None
        The training budgets (:class:`Schedule`: the fitness and final
        budgets, the screening, the rungs' ``factor``, ``n_finalists`` and
        ``final_seeds``); None is ``Schedule()``. ``schedule__*`` in a grid.
    seed_programs : "auto", "usual" or sequence of str, default="auto"
        Programs placed in the first generation, never filtered out, never
        given the local search, and always kept among the finalists, so
        ``best_loss_`` is never worse on CV than the best of them; an evolved
        program replaces the best of them only by more than ``margin``.
        "auto" seeds the usual loss and the losses a practitioner tries first
        (:func:`~metaloss_sk.zoo.known_losses`: label smoothing 0.1, focal
        loss with gamma 2, PolyLoss Poly-1 and the Brier score for
        classifiers; absolute error and the pseudo-Huber loss for
        regressors; their primitives, like cross-entropy's ``neg``, need not
        be in ``function_set``); "usual" seeds the usual loss only
        (cross-entropy or squared error). Seeds beyond ``population_size``
        are left out.
    hall_of_fame : int, default=10
        Number of best distinct programs kept in ``hall_of_fame_``.
    baseline_lrs : "auto", sequence of float or None, default="auto"
        Learning rates the usual loss is tuned over, by CV (``baseline_``):
        "auto" is the net's lr times 10^-2 to 10^2 in half decades (9
        rates); None tries the net's lr only. Every rate trains at the
        final budget with one weight seed per fold; the best two and the
        net's own rate then train with ``final_seeds`` (successive halving
        over the seeds: a rate judged on a shorter budget favours the rates
        that learn fast early).
    search_lr : {"tuned", "net"}, default="tuned"
        The learning rate candidates train with. "tuned" first tunes it for
        the usual loss over ``baseline_lrs`` (the ``baseline_`` trainings),
        then searches, selects and refits at that rate: the found loss must
        beat the usual loss at the usual loss's best learning rate, trained
        at the same rate, so it cannot win by acting as a larger step size.
        "net" keeps the net's own rate (for a rate tuned already), and
        ``baseline_`` is measured after the search. ``search_lr_`` holds the
        rate used.
    margin : "se" or float, default="se"
        How much better than the best seed program (the known losses of
        ``seed_programs``) an evolved program must score at the final budget
        to become ``best_loss_``: the mean paired per-fold difference of
        their CV scores must exceed this. "se" is that difference's standard
        error; a number is in the scorer's units; 0 takes any improvement.
        The best CV score among many programs is optimistic (the winner's
        curse), so a margin keeps a known loss unless an evolved one is
        better beyond the noise. The same rule applies to every replacement
        a local search after the genetic search makes (``fit_refine``,
        ``local_search="winners"``).
    standardize_target : bool, default=True
        For regression, train on targets standardised on each fold's training
        rows and map predictions back (as ``TransformedTargetRegressor`` with
        a ``StandardScaler``; ``best_estimator_`` is one). Without it, a
        target of large scale makes every program but the smallest-gradient
        ones diverge.
    max_time : float or None, default=None
        Stop the genetic search after the generation during which this many
        seconds passed.
    n_iter_no_change : int or None, default=None
        Stop after this many generations without a better best score.
    max_evaluations : int or None, default=None
        Stop after this many distinct programs have been trained.
    local_search : None, "all", "winners" or LocalSearch, default=None
        EvoMAL's local search, which learns one coefficient per edge of a
        program by unrolled differentiation (see :class:`LocalSearch` and
        :meth:`fit_refine`). None is plain GP (GP-LFL); "all" refines every
        candidate before its fitness is measured (EvoMAL proper);
        "winners" refines the best programs after the final selection,
        inside ``fit``. A :class:`LocalSearch` sets the details (its
        parameters are ``local_search__*`` in a grid). On each fold the local
        search sees only that fold's training rows.
    train_loop : {"auto", "fast", "skorch"}, default="auto"
        How candidates train: "fast" is a tight loop over tensors that honours
        the net's configuration, "skorch" calls ``net.fit``; "auto" uses the
        fast loop unless the net has callbacks or overrides it cannot honour.
    candidates_per_task : int, default=8
        Candidates one parallel task trains together on a fold, in lockstep
        (their local searches too). A candidate's result does not depend on
        its group, so results do not depend on ``n_jobs``.
    checkpoint : str, path or None, default=None
        A JSON file the search writes atomically after every generation. If
        it exists when ``fit`` starts, the search resumes from it, and ends
        with the result an uninterrupted run would have given; a checkpoint
        written with other settings or data is refused. Interrupting ``fit``
        (Ctrl-C) stops the genetic search with the results so far.
    scoring : str, callable, list, tuple, dict or None, default=None
        Scorer for the held-out folds; None uses the estimator's ``score``.
        Several metrics, as in ``GridSearchCV`` (a list or tuple of scorer
        names, or a dict of name to scorer), need ``refit`` to name the one
        that selects; the others are recorded in ``cv_results_``
        (``mean_test_<name>``, ``std_test_<name>``, ``splitK_test_<name>``)
        beside ``mean_test_score``, which is the selecting metric's.
    cv : int, cross-validation generator or iterable, default=3
        As in :class:`~sklearn.model_selection.GridSearchCV`. The splits are
        computed once per fit, so every generation sees the same folds.
    refit : bool, str or callable, default=True
        Refit the net with the best loss on all the data (``best_estimator_``).
        With multi-metric ``scoring``, the name of the metric that selects
        the loss (and the net is refit).
        A callable, as in ``GridSearchCV``, takes ``cv_results_`` and returns
        the index of the row to use instead of the best one (its loss becomes
        ``best_loss_``, its mean score ``best_score_``);
        :func:`~metaloss_sk.simplest_within_one_se` picks the shortest
        program within one standard error of the best.
    n_jobs : int or None, default=None
        Candidates trained in parallel through joblib; results do not depend on it.
    verbose : int, default=0
        0 is silent; 1 prints a line per generation and the result beside the
        usual loss; 2 also the hall of fame after every generation.
    error_score : "raise" or float, default=np.nan
        Score recorded when a candidate fails to train or score; failures
        are never selected. "raise" re-raises errors (a loss that merely
        turns non-finite is still recorded, never raised).
    random_state : int, RandomState or None, default=None
        Seeds the evolution, the network initialisations and batch orders.

    Attributes
    ----------
    best_loss_ : SymbolicLoss
        The best loss at the final budget.
    best_score_ : float
        Its mean cross-validated score at the final budget and ``best_lr_``
        (``cv_results_`` holds every program's at ``search_lr_``).
    best_params_ : dict
        ``best_loss_.as_params()``: the criterion class and its ``criterion__*``
        settings, so ``net.set_params(**search.best_params_)`` uses the found loss.
    best_index_ : int
        Its row in ``cv_results_``.
    best_estimator_ : skorch net or TransformedTargetRegressor
        The estimator refit with ``best_loss_`` (when ``refit=True``);
        wrapped to standardise the target for regression with
        ``standardize_target``.
    baseline_ : dict or None
        The usual loss (cross-entropy or squared error) at the final budget,
        on the same folds and weight seeds as the finalists: ``program``;
        ``n_resources`` and ``n_seeds``; ``lrs`` and ``mean_test_score``
        (one per learning rate tried; NaN where it failed); ``net_lr``,
        ``net_lr_score`` and ``net_lr_split_scores`` (at the net's own
        learning rate); ``tuned_lr``, ``tuned_score`` and
        ``tuned_split_scores`` (at the best of ``lrs``); ``ladder`` (every
        rate's mean score with one seed, then the best ones' with
        ``final_seeds``); ``found_split_scores`` (``best_loss_``'s per fold,
        at ``best_lr_``), so the paired difference per fold is
        ``found_split_scores - tuned_split_scores``; ``search_lr`` and
        ``best_lr``; ``known_losses`` (per seed program: ``name``,
        ``program``, ``n_resources``, ``mean_test_score`` and
        ``split_scores`` at ``search_lr_``); and ``contest`` (the best evolved
        program against the best known loss: ``champion``, ``challenger``,
        each one's rates and scores, ``difference``, ``margin``, ``replaced``;
        None when the best program was a known loss at the search's rate
        without a contest). None when the search was interrupted before its
        final selection.
    cv_results_ : dict of arrays
        One row per distinct program: ``program``, ``infix``, ``length``,
        ``depth``, ``generation``, ``iter`` (the highest rung it reached: 0 is
        the fitness budget, or the screening budget with ``screening``), ``n_resources`` (its training steps there),
        ``splitK_test_score``, ``mean_test_score``, ``std_test_score`` and
        ``mean_fit_time`` at that rung, ``iterI_mean_test_score`` at every
        rung I, ``rank_test_score`` (programs that reached a higher rung rank
        first), ``status`` ("ok", "nan", "chance", "error" or "rejected"),
        ``message`` (why), ``equivalent_to`` (the program whose evaluation
        this one shares, or "") and ``params`` (each loss as skorch
        parameters).
    n_resources_ : list of int
        Training steps per net at each rung (rung 0: the genetic search's
        fitness budget, or its screening budget and then the fitness budget).
    n_candidates_ : list of int
        Programs trained at each rung.
    search_lr_ : float
        The learning rate the candidates and the finalists trained with (see
        ``search_lr``).
    best_lr_ : float
        The learning rate ``best_loss_`` was chosen at and ``best_estimator_``
        trained with. With ``search_lr="tuned"`` the final contest (the best
        evolved program against the best known loss) also tries each at the
        rates of the grid beside ``search_lr_``, as a practitioner tunes the
        rate of the loss they try, and each takes its best; otherwise
        ``search_lr_``.
    hall_of_fame_ : list of dict
        The best distinct programs, best first, as plain values.
    history_ : list of dict
        One entry per generation: best and median score, programs proposed,
        cache hits, equivalent, rejected, trained, promoted past the
        screening (all trained ones without ``screening``) and failed, filter and
        training time, the workers' time training candidates (``fit_time``:
        summed over the parallel tasks) and the part of it spent in the local
        search (``local_search_time``), and elapsed time.
    search_stats_ : dict
        Totals: generations, programs proposed, evaluations (programs trained
        by the genetic search), promoted (of those, trained at the fitness
        budget), fold fits (networks trained, the final
        selection's ``ladder_fits`` included), cache hits, equivalent,
        rejected, failures, local search meta steps (and those skipped for a
        non-finite meta objective), and time (all, filtering, training, the
        workers' summed ``fit_time`` and ``local_search_time``, and the final
        selection's ``ladder_time``); ``train_loop``: ``"batched"``,
        ``"lockstep"`` or ``"skorch"`` (see ``Trainer.loop``).
    refine_results_ : list of dict
        Set by a local search after the genetic search (``"winners"`` or
        :meth:`fit_refine`): per refined program its CV score at the final
        budget before and after, whether the refined loss was kept, its
        coefficients, and time.
    classes_ : ndarray
        Class labels (classifiers).
    n_features_in_ : int
        Number of features seen in ``fit`` (not set when ``X`` is a dict).

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

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, **fit_params):
        """Run the search, choose the winner at the final budget, then refit the net with it.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or dict of arrays
            Training data; cast to float32, as torch modules expect. A dict
            (or skorch's ``SliceDict``) is skorch's input for a module with
            several inputs: one array per keyword argument of its
            ``forward``, each with one entry per row (float arrays cast to
            float32, integer ones kept). Rows are split, batched and passed
            as skorch passes them, so a net that weights rows by an entry of
            ``X`` in its own ``get_loss`` trains every candidate that way.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (any type; mapped to ``0..n_classes-1`` internally and
            back in ``predict``) or regression targets.
        **fit_params
            Not supported: given any (``sample_weight``, say), ``fit`` raises
            ``TypeError`` before training. skorch hands fit parameters to the
            module's ``forward`` whole, not per batch; per-row data, weights
            included, goes in ``X`` as a dict.

        Returns
        -------
        self : LossSearchCV
        """
        if fit_params:
            raise TypeError(
                f"LossSearchCV.fit takes no fit parameters, got {', '.join(sorted(fit_params))}: skorch passes "
                "them to the module's forward whole, not per batch. Per-row data goes in X, as a dict of arrays "
                "(skorch's way): X={'X': X, 'sample_weight': w}, with a module whose forward takes both and a "
                "net whose get_loss passes the weights to its criterion (README: 'Weighted rows').")
        start = time.perf_counter()
        # Phase 1: the settings and the data, checked; the budgets, worked out once.
        self._forget_fit()
        evolution, _, net = self._check_params()
        inputs = self._inputs = Inputs(self.estimator)
        X, y = inputs.fit(self, X, y)
        self.classes_ = inputs.classes_
        rng = check_random_state(self.random_state)
        splits = inputs.splits(self.cv, X, y)
        fold_seeds = rng.randint(np.iinfo(np.int32).max, size=len(splits))
        refit_seed = int(rng.randint(np.iinfo(np.int32).max))
        X_all, (X_folds, y_folds, splits) = inputs.net_rows(X, y), inputs.fold_rows(X, y, splits)
        inputs.preflight(X_all, y)
        seeds = self._seed_programs()
        self._plan = self._schedule.plan(net, len(splits[0][0]), self._every_candidate_settings() is not None)
        self._signature = signature(self._search_settings(), X_all, y)
        state = load_checkpoint(self.checkpoint, self._signature) if self.checkpoint is not None else None
        resumed = state is not None
        if state is None:
            space = evolution.space()
            state = SearchState(population=initial_population(space, evolution.population_size, seeds, rng,
                                                              tuple(evolution.init_depth), evolution.init_method),
                                rng=rng, fold_seeds=[int(s) for s in fold_seeds], refit_seed=refit_seed)
        self._state, self.history_ = state, state.history
        progress = Progress(self.verbose, evolution.population_size, self.generations, state.generation, start,
                            self.max_time)
        if resumed:
            progress.write(f"[LossSearchCV] resuming from {self.checkpoint} at generation {state.generation}")
        try:
            with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel:
                config = self._config(splits, seeds, net)
                # Phase 2: the usual loss's learning rate, tuned at the final budget.
                baseline, self.search_lr_ = None, float(net.lr)
                if self.search_lr == "tuned":
                    baseline = final.usual_baseline(Evaluator(config, X_folds, y_folds, splits, parallel),
                                                    self._plan, inputs.task, self.baseline_lrs, float(net.lr))
                    self.search_lr_ = self._tuned_lr(baseline)
                    config = self._config(splits, seeds, self._search_net())
                # Phase 3: the genetic search.
                evaluator = Evaluator(config, X_folds, y_folds, splits, parallel, progress=progress)
                if resumed:
                    evaluator.restore(state.evaluator)
                interrupted = self._evolve(evaluator, evolution, state, start, progress)
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
                    self.baseline_ = {**baseline, "found_split_scores": list(self._best_split_scores),
                                      "search_lr": self.search_lr_, "best_lr": self.best_lr_,
                                      "known_losses": final.known_scores(evaluator, self._seed_names),
                                      "contest": self._contest}
        finally:
            progress.close()
        self._state.evaluator = evaluator.state()
        # Phase 5: the refit.
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        for line in results.summary_lines(self.best_loss_, self.best_score_, self._best_split_scores,
                                          self.baseline_):
            progress.write(line)
        return self

    #: The private state a fit sets (beside its attributes ending in "_"); a new one belongs here too.
    _FITTED_STATE = ("_inputs", "_plan", "_scorer", "_other_scorers", "_signature", "_state", "_best_split_scores",
                     "_seed_names", "_contest")

    def _forget_fit(self):
        """Remove what an earlier ``fit`` or ``fit_refine`` left (fitted attributes and private state, such as
        ``refine_results_``, which ``_finish`` applies), so that a fit starts as on a fresh object.

        sklearn's own private attributes (a Pipeline's callback context, metadata requests) stay.
        """
        params = self.get_params(deep=False)
        for name in list(vars(self)):
            if name in self._FITTED_STATE or (name.endswith("_") and not name.startswith("_") and name not in params):
                delattr(self, name)

    def _evolve(self, evaluator, evolution, state, start, progress):
        """The generation loop: evaluate, report, stop or breed, checkpoint. True if interrupted."""
        space = evolution.space()
        try:
            for generation in range(state.generation, self.generations):
                max_new = (None if self.max_evaluations is None
                           else max(self.max_evaluations - evaluator.n_trained, 0))
                fitness, stats = evaluator.generation(state.population, generation, max_new)
                state.history.append({"generation": generation, **stats,
                                      "elapsed": time.perf_counter() - start + state.elapsed})
                progress.generation(state.history[-1], evaluator.rows.values(), self.hall_of_fame)
                improved = stats["best_score"] > state.best
                state.best = float(np.fmax(state.best, stats["best_score"]))
                state.stale = 0 if improved else state.stale + 1
                # The next population is bred even after the last generation, so a
                # checkpoint can always continue (with more generations, say).
                penalty = evolution.parsimony_coefficient * np.array([len(p) for p in state.population])
                state.population = next_generation(state.population, fitness - penalty, space, evolution, state.rng)
                state.generation = generation + 1
                if self.checkpoint is not None:
                    saved = replace(state, elapsed=state.history[-1]["elapsed"], evaluator=evaluator.state())
                    save_checkpoint(self.checkpoint, saved, self._signature)
                if self._should_stop(state, start, evaluator):
                    break
        except KeyboardInterrupt:
            if not evaluator.rows:
                raise
            warnings.warn(
                f"LossSearchCV was interrupted after {len(state.history)} generation(s); the search "
                "stops here and takes the best program at the fitness budget, without the final selection.",
                UserWarning, stacklevel=3)
            return True
        return False

    def _should_stop(self, state, start, evaluator):
        if self.n_iter_no_change is not None and state.stale >= self.n_iter_no_change:
            return True
        if self.max_time is not None and time.perf_counter() - start >= self.max_time:
            return True
        return self.max_evaluations is not None and evaluator.n_trained >= self.max_evaluations

    def _config(self, splits, seeds, net):
        """The evaluator's settings: the net ``net`` (the estimator's, at the search's rate) and the plan."""
        evolution, blockers = self._evolution, fast_path_blockers(self._net)
        if self.train_loop == "fast" and blockers:
            raise ValueError(f"train_loop='fast' cannot train this net: it {'; '.join(blockers)}. "
                             "Use train_loop='auto' or 'skorch'.")
        fast = self.train_loop == "fast" or (self.train_loop == "auto" and not blockers)
        self._scorer, self._other_scorers, self.scorer_ = scorers(self.scoring, self.refit, self._net)
        task = self._inputs.task
        evaluation = Evaluation(
            trainer=Trainer(net, fast), task=task, scorer=self._scorer, other_scorers=self._other_scorers,
            error_score=self.error_score, standardize=task == "regression" and self.standardize_target,
            local_search=self._every_candidate_settings(), local_search_budget=self._plan.fitness,
            gradient_bound=evolution.gradient_bound)
        return EvaluatorConfig(
            evaluation=evaluation, fold_seeds=tuple(self._state.fold_seeds), plan=self._plan, n_jobs=self.n_jobs,
            candidates_per_task=self.candidates_per_task, equivalence=evolution.equivalence,
            rejection_steps=evolution.rejection_steps, gradient_bound=evolution.gradient_bound,
            seed_programs=tuple(str(p) for p in seeds))

    # ----------------------------------------------------------- final selection
    def _select(self, evaluator, interrupted, X, y):
        """The final selection (unless interrupted) and the best loss; ``X, y``: all rows, as the net sees them."""
        budgets = [] if interrupted else list(self._plan.rungs)
        self.n_resources_, self.n_candidates_ = final.successive_halving(evaluator, self._plan, budgets)
        rows = list(evaluator.rows.values())
        try:
            best = final.winner(rows, str(usual_loss(self._inputs.task).program_))
        except RuntimeError:
            self.cv_results_ = results.cv_results(rows, len(evaluator.splits))
            raise
        split_scores, self.best_lr_, self._contest = best.last.scores, self.search_lr_, None
        if callable(self.refit):
            best = rows[final.refit_choice(self.refit, rows, len(evaluator.splits))]
            split_scores = best.last.scores
        elif best.status == "ok":
            grid = final.learning_rates(self.baseline_lrs, float(self._net.lr))
            tuned = budgets and self.search_lr == "tuned"
            outcome = final.contest_at_rates(evaluator, rows, evaluator.config.seed_programs, self.margin,
                                             self._plan.final if budgets else None, self._plan.final_seeds,
                                             self.search_lr_, final.neighbour_rates(grid, self.search_lr_)
                                             if tuned else [])
            if outcome is not None:
                best, self.best_lr_, split_scores, self._contest = outcome
        loss = best.loss
        seeded = str(best.program) in evaluator.config.seed_programs
        if evaluator.config.evaluation.local_search is not None and best.status == "ok" and not seeded:
            loss = refine_on(evaluator.config.evaluation, loss, X, y, self._state.refit_seed)
        score = float(np.mean(split_scores)) if best.status == "ok" else float(np.mean(best.last.scores))
        self._set_best(loss, score, split_scores)
        self.best_index_ = rows.index(best)

    def _tuned_lr(self, baseline):
        """``search_lr="tuned"``: the usual loss's best learning rate, or the net's if it failed at every one."""
        if baseline["tuned_lr"] is None:
            warnings.warn("search_lr='tuned': the usual loss failed at every learning rate of baseline_lrs; "
                          "the search runs at the net's own learning rate.", UserWarning, stacklevel=3)
            return float(self._net.lr)
        return float(baseline["tuned_lr"])

    def _search_net(self, lr=None):
        """The net the candidates train: the estimator's, at ``search_lr_`` (or ``lr``)."""
        lr = self.search_lr_ if lr is None else lr
        return self._net if lr == float(self._net.lr) else clone(self._net).set_params(lr=lr)

    # ----------------------------------------------------------- local search after the GP
    def fit_refine(self, X, y, local_search=None):
        """Tune the coefficients of the best programs found (EvoMAL's local search).

        Each of the ``top_k`` best distinct programs becomes a loss
        with one coefficient per edge, learned by unrolled differentiation on
        every fold's training rows (its checkpoints validated at the final
        budget), and is rescored at the final budget with
        the search's own folds and weight seeds. A refined loss is kept only
        where its CV score there beats the program's own by more than
        ``margin``; ``best_loss_``, ``best_score_``, ``best_params_``,
        ``hall_of_fame_``, ``baseline_``'s ``found_split_scores`` and (with
        ``refit=True``) ``best_estimator_`` are updated, and
        ``refine_results_`` records what happened.

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
            evaluator = Evaluator(self._config(splits, self._seed_programs(), self._search_net()),
                                  X_folds, y_folds, splits, parallel)
            evaluator.restore(self._state.evaluator)
            self._local_search_winners(evaluator, self._inputs.net_rows(X, y), y, local_search)
            self._state.evaluator = evaluator.state()
        if self.baseline_ is not None:
            self.baseline_["found_split_scores"] = list(self._best_split_scores)
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        return self

    def _every_candidate_settings(self):
        """The local search every candidate gets before its fitness (EvoMAL), or None."""
        settings = self._local_search_settings()
        return settings if self.local_search is not None and settings.candidates == "all" else None

    def _local_search_settings(self):
        return self.local_search if isinstance(self.local_search, LocalSearch) else LocalSearch(
            candidates="winners" if self.local_search in (None, "winners") else "all")

    def _local_search_winners(self, evaluator, X, y, settings=None):
        """The local search on the best programs at the final budget; improvements kept, the best loss updated."""
        evaluation = evaluator.config.evaluation

        def on_all_rows(settings, loss):
            return refine_on(replace(evaluation, local_search=settings, local_search_budget=self._plan.final),
                             loss, X, y, self._state.refit_seed)

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
        self.hall_of_fame_ = results.hall_of_fame(rows, self.hall_of_fame)
        for entry, refined in ((e, r) for e in self.hall_of_fame_ for r in getattr(self, "refine_results_", [])
                               if r["kept"] and r["program"] == e["program"]):
            entry.update(mean_test_score=refined["score_after"], coefficients=refined["coefficients"])
        meta_steps = self._local_search_settings().meta_steps if evaluator.config.evaluation.local_search else 0
        self.search_stats_ = results.search_stats(self.history_, evaluator.totals, len(evaluator.splits), elapsed,
                                                  meta_steps)
        self.search_stats_["train_loop"] = evaluator.config.evaluation.trainer.loop(evaluator.X)

    def _set_best(self, loss, score, split_scores):
        self.best_loss_ = loss
        self.best_score_ = float(score)
        self.best_params_ = loss.as_params()
        self._best_split_scores = [float(s) for s in split_scores]

    # ----------------------------------------------------------- checks and set-up
    def _check_params(self):
        """Check every setting (nested ones too) by the constraint table; ``(evolution, schedule, net)``."""
        check(self.get_params(deep=False), self._parameter_constraints)
        for nested in (self._evolution, self._schedule, self.local_search):
            if hasattr(nested, "check"):
                nested.check()
        net = self._net
        Inputs(self.estimator).check_net()
        if self.checkpoint is not None:
            check_writable(self.checkpoint)
        return self._evolution, self._schedule, net

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

    def _seed_programs(self):
        """The seed programs, and ``_seed_names``: a name for each (the known losses' own, else the program)."""
        if isinstance(self.seed_programs, str):  # "auto" or "usual"
            known = known_losses(self._inputs.task, self._inputs.n_classes)
            if self.seed_programs == "usual":
                known = dict(list(known.items())[:1])
            named = {name: parse(text) for name, text in known.items()}
            self._seed_names = {str(p): name for name, p in named.items()}
            return list(named.values())
        programs = [parse(p) for p in self.seed_programs]
        for p in programs:
            if not p.is_valid_loss:
                raise ValueError(f"seed program {str(p)!r} must use both y and yhat.")
        self._seed_names = {str(p): p.infix(simplify=True) for p in programs}
        return programs

    def _search_settings(self):
        """The settings that decide the genetic search's course (a checkpoint must match them)."""
        ignored = ("n_jobs", "verbose", "max_time", "checkpoint", "refit", "generations", "n_iter_no_change",
                   "max_evaluations", "baseline_lrs", "schedule")
        schedule = self._schedule
        return {**{k: v for k, v in self.get_params(deep=False).items() if k not in ignored},
                "evolution": self._evolution,
                "schedule": {"min_resources": schedule.min_resources, "screening": schedule.screening,
                             **({"factor": schedule.factor} if schedule.screening is not None else {})}}

    def _refit(self, X, y):
        """``best_estimator_``: the net (after the Pipeline's steps, if any) trained with ``best_loss_``."""
        net = build_net(self._search_net(self.best_lr_), self.best_loss_, verbose=self._net.verbose,
                        train_split=self._net.train_split)
        steps = self._inputs.preprocessing()
        if steps is not None:
            net = Pipeline([*steps.steps, ("to_float32", FunctionTransformer(to_float32)),
                            (self.estimator.steps[-1][0], net)])
        if self._inputs.task == "regression" and self.standardize_target:
            net = TransformedTargetRegressor(regressor=net, transformer=StandardScaler())
        torch.manual_seed(self._state.refit_seed)
        return net.fit(X, y)

    # -------------------------------------------------------------- results
    def results_frame(self):
        """The hall of fame as a pandas DataFrame (program, infix, sympy, complexity, scores)."""
        from .plotting import results_frame
        return results_frame(self)

    def plot_progress(self, ax=None):
        """Best and median CV score per generation (matplotlib)."""
        from .plotting import plot_progress
        return plot_progress(self, ax=ax)

    def plot_pareto(self, ax=None):
        """CV score against program length, with the Pareto front (matplotlib)."""
        from .plotting import plot_pareto
        return plot_pareto(self, ax=ax)

    def loss(self, rank=1):
        """The hall of fame's ``rank``-th loss (1 is the best) as a :class:`SymbolicLoss`.

        With learned coefficients where :meth:`fit_refine` kept some (the
        best loss is ``best_loss_`` itself, coefficients and all). Use it as
        ``best_loss_`` is used: ``net.set_params(criterion=search.loss(2))``.
        """
        check_is_fitted(self, "hall_of_fame_")
        if isinstance(rank, bool) or not isinstance(rank, Integral) or not 1 <= rank <= len(self.hall_of_fame_):
            raise ValueError(f"rank must be an integer from 1 to {len(self.hall_of_fame_)} (the hall of fame's "
                             f"size), got {rank!r}.")
        entry = self.hall_of_fame_[rank - 1]
        if entry["program"] == str(self.best_loss_.program_):  # with its coefficients, if it learned some
            return clone(self.best_loss_)
        return SymbolicLoss(entry["program"], task=self.best_loss_.task, link=self.best_loss_.link,
                            coefficients=entry.get("coefficients"))

    def export_torch(self, name="learned_loss"):
        """Source of a standalone PyTorch function computing ``best_loss_`` (no metaloss_sk needed)."""
        check_is_fitted(self, "best_loss_")
        return to_torch_source(self.best_loss_, name)

    # ----------------------------------------------------------- delegation
    def _check_X(self, X):
        check_is_fitted(self, "best_estimator_")
        return self._inputs.rows(self, X)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with ``best_estimator_`` (labels mapped back to ``classes_``)."""
        return self._inputs.decode(self.best_estimator_.predict(self._check_X(X)))

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from ``best_estimator_``."""
        return self.best_estimator_.predict_proba(self._check_X(X))

    @available_if(_estimator_has("predict_proba"))
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @available_if(_estimator_has("forward"))
    def forward(self, X):
        """Raw module outputs of ``best_estimator_`` as a tensor."""
        return self.best_estimator_.forward(self._check_X(X))

    def score(self, X, y):
        """Score ``best_estimator_`` on ``(X, y)`` with the search's scorer."""
        X = self._check_X(X)
        return float(self._scorer(self.best_estimator_, X, self._inputs.encode(np.asarray(y))))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = getattr(self.estimator, "_estimator_type", None)
        try:
            inner = self.estimator.__sklearn_tags__()
            tags.estimator_type = inner.estimator_type
            tags.classifier_tags = inner.classifier_tags
            tags.regressor_tags = inner.regressor_tags
        except AttributeError:
            pass
        tags.input_tags.sparse = False
        return tags
