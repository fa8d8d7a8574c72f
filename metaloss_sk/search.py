"""LossSearchCV: evolve a symbolic loss for a skorch net, scored by cross-validation."""

import contextlib
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, rng_from_json, rng_to_json, save_checkpoint, signature
from .engine import Budget, LocalSearch, fast_path_blockers, refine_loss
from .evaluator import SQUARED_ERROR, Evaluator, mean_score
from .evolution import Variation, initial_population, next_generation
from .export import to_torch_source
from .loss import CROSS_ENTROPY, SymbolicLoss
from .primitives import EVOMAL_FUNCTION_SET
from .program import SearchSpace, parse

__all__ = ["LossSearchCV"]

_TRAIN_LOOPS = ("auto", "fast", "skorch")
_LOCAL_SEARCH = (None, "winners", "all")
_EQUIVALENCE = ("none", "exact", "symbolic", "gradient")


def _task_of(net):
    if isinstance(net, NeuralNetBinaryClassifier):
        return "binary"
    if isinstance(net, NeuralNetClassifier):
        return "multiclass"
    if isinstance(net, NeuralNetRegressor):
        return "regression"
    if isinstance(net, NeuralNet):
        raise TypeError(
            f"estimator is a plain {type(net).__name__}; use NeuralNetClassifier, "
            "NeuralNetBinaryClassifier or NeuralNetRegressor so the search knows the task."
        )
    raise TypeError(
        f"estimator must be a skorch net (NeuralNetClassifier, NeuralNetBinaryClassifier or "
        f"NeuralNetRegressor), got {type(net).__name__}."
    )


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "best_estimator_"):
            return hasattr(self.best_estimator_, attr)
        return hasattr(self.estimator, attr)
    return check


class LossSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Search for a loss function for a skorch net by genetic programming (EvoMAL).

    Each candidate loss is a symbolic program over the target ``y`` and the
    prediction ``yhat`` (see :class:`~metaloss_sk.SymbolicLoss`). Its fitness
    is the cross-validated score of the net trained with it: on every fold,
    every candidate starts from the same seeded initialisation and sees the
    same batch order, so scores differ by the loss alone. Programs evolve with
    gplearn's variation operators, tournament selection and elitism; the
    best program is then used to refit the net on all the data.

    Parameters
    ----------
    estimator : skorch NeuralNetClassifier, NeuralNetBinaryClassifier or NeuralNetRegressor
        The net whose loss is searched. Its module, optimizer, ``lr``,
        ``batch_size``, ``max_epochs``, ``device`` and ``*__`` settings are
        honoured; its criterion is replaced by each candidate.
    population_size : int, default=25
        Programs per generation.
    generations : int, default=50
        Maximum number of generations.
    tournament_size : int, default=4
        Programs competing in each selection tournament.
    function_set : sequence of str, default=EVOMAL_FUNCTION_SET
        Primitives new programs are built from (see ``metaloss_sk.PRIMITIVES``).
    constants : sequence of float, default=(1.0, -1.0)
        Fixed constants offered as terminals (EvoMAL uses +1 and -1).
    const_range : tuple of two floats or None, default=None
        Range of gplearn's random constants, or None for none.
    init_depth : tuple of two ints, default=(2, 4)
        Height range of the initial programs.
    init_method : {"half and half", "grow", "full"}, default="half and half"
        gplearn's initialisation method.
    max_height : int, default=10
        An offspring taller than this is replaced by its parent.
    p_crossover, p_subtree_mutation, p_hoist_mutation, p_point_mutation : float
        Probabilities of the genetic operators (defaults 0.7, 0.25, 0, 0); the
        remainder is reproduction.
    p_point_replace : float, default=0.05
        Per-node replacement probability of point mutation.
    mutation_depth : tuple of two ints, default=(0, 2)
        Height range of subtrees grown by subtree mutation.
    parsimony_coefficient : float, default=0.0
        Subtracted per program node from the score when selecting parents.
    elitism : int, default=1
        Number of best distinct programs copied unchanged into each generation.
    seed_programs : "auto" or sequence of str, default="auto"
        Programs placed in the first generation; "auto" seeds cross-entropy for
        classifiers and squared error for regressors.
    hall_of_fame : int, default=10
        Number of best distinct programs kept in ``hall_of_fame_``.
    max_epochs : int or None, default=None
        Epochs each candidate trains; None uses the estimator's ``max_epochs``.
    max_steps : int or None, default=None
        If set, each candidate trains for this many optimizer steps instead
        (EvoMAL uses 500).
    max_time : float or None, default=None
        Stop after the generation during which this many seconds passed.
    n_iter_no_change : int or None, default=None
        Stop after this many generations without a better best score.
    max_evaluations : int or None, default=None
        Stop after this many distinct programs have been trained.
    local_search : {None, "winners", "all"}, default=None
        EvoMAL's local search, which learns one coefficient per edge of a
        program by unrolled differentiation (see :meth:`fit_refine`). None is
        plain GP (GP-LFL); "winners" refines the ``refine_top_k`` best programs
        after the search, inside ``fit``; "all" refines every candidate before
        its fitness is measured (EvoMAL proper). On each fold the local search
        sees only that fold's training part, of which it holds out 20 % for its
        meta objective.
    meta_steps : int, default=250
        Meta steps of each local search.
    meta_lr : float, default=1e-3
        Adam's learning rate on the coefficients.
    unroll : int, default=1
        Differentiable training steps per meta step.
    refine_top_k : int, default=3
        Programs refined by ``local_search="winners"`` and :meth:`fit_refine`.
    equivalence : {"none", "exact", "symbolic", "gradient"}, default="gradient"
        Which programs share one evaluation: none ("none": every proposed
        program is trained, a repeat again, with the same seeds and so the
        same scores; a baseline for what the cache saves); identical text
        only ("exact", the reference's cache); also programs with the same sympy canonical
        form ("symbolic"); also programs with the same gradient with respect
        to the network's outputs on 100 probe rows of the first fold
        ("gradient": losses that differ by a constant, for instance).
        Whatever the setting, a loss whose gradient there is zero or not
        finite is rejected without training. With ``local_search="all"``,
        where equal functions of different shapes learn different
        coefficients, "symbolic" and "gradient" share only programs that
        differ by swapped arguments of commutative primitives (``add``,
        ``mul``, ``min``, ``max``): with one coefficient per edge they are
        the same family of losses.
    rejection_steps : int, default=250
        EvoMAL's rejection protocol, run before any training: the probe
        rows' outputs are optimised directly for up to this many Adam steps
        (lr 0.01), and a loss that does not lower the task error there is
        rejected. 0 turns it off. EvoMAL uses 1000; on 300 random programs on
        digits, 250 rejected exactly the same ones at a quarter of the cost
        (Adam moves each output by at most about lr per step, so a loss that
        points the right way shows it early).
    train_loop : {"auto", "fast", "skorch"}, default="auto"
        How candidates train: "fast" is a tight loop over tensors that honours
        the net's configuration, "skorch" calls ``net.fit``; "auto" uses the
        fast loop unless the net has callbacks or overrides it cannot honour.
    candidates_per_task : int, default=8
        Candidates one parallel task trains together on a fold, in lockstep
        (their local searches too). Larger groups share more of the
        networks' cost; a generation's candidates are split into as few
        groups as leave every worker a task, of even program length. A
        candidate's result does not depend on its group, so results do not
        depend on ``n_jobs``.
    checkpoint : str, path or None, default=None
        A JSON file the search writes atomically after every generation. If
        it exists when ``fit`` starts, the search resumes from it, and ends
        with the result an uninterrupted run would have given; a checkpoint
        written with other settings or data is refused. Interrupting ``fit``
        (Ctrl-C) stops at the next safe point with the results so far.
    scoring : str, callable or None, default=None
        Scorer for the held-out folds; None uses the estimator's ``score``.
    cv : int, cross-validation generator or iterable, default=3
        As in :class:`~sklearn.model_selection.GridSearchCV`. The splits are
        computed once per fit, so every generation sees the same folds.
    refit : bool, default=True
        Refit the net with the best loss on all the data (``best_estimator_``).
    n_jobs : int or None, default=None
        Candidates trained in parallel through joblib; results do not depend on it.
    verbose : int, default=0
        0 is silent; 1 prints a line per generation and the result.
    error_score : "raise" or float, default=np.nan
        Score recorded when a candidate fails to train or score; failures
        are never selected. "raise" re-raises errors (a loss that merely
        turns non-finite is still recorded, never raised).
    random_state : int, RandomState or None, default=None
        Seeds the evolution, the network initialisations and batch orders.

    Attributes
    ----------
    best_loss_ : SymbolicLoss
        The best loss found.
    best_score_ : float
        Its mean cross-validated score.
    best_params_ : dict
        ``best_loss_.as_params()``: the criterion class and its ``criterion__*``
        settings, so ``net.set_params(**search.best_params_)`` uses the found loss.
    best_index_ : int
        Its row in ``cv_results_``.
    best_estimator_ : skorch net
        The estimator refit with ``best_loss_`` (when ``refit=True``).
    cv_results_ : dict of arrays
        One row per distinct program trained: ``program``, ``infix``,
        ``length``, ``depth``, ``generation``, ``splitK_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``,
        ``mean_fit_time``, ``std_fit_time``, ``status`` ("ok", "nan", "error"
        or "rejected"), ``message`` (why), ``equivalent_to`` (the program whose
        evaluation this one shares, or "") and ``params`` (each loss as skorch
        parameters).
    hall_of_fame_ : list of dict
        The best distinct programs, best first.
    history_ : list of dict
        One entry per generation: best and median score, programs proposed,
        cache hits, equivalent, rejected, trained and failed, filter and
        training time, the workers' time training candidates (``fit_time``:
        summed over the parallel tasks) and the part of it spent in the local
        search (``local_search_time``), and elapsed time.
    search_stats_ : dict
        Totals: generations, programs proposed, evaluations (programs trained),
        fold fits (networks trained), cache hits, equivalent, rejected,
        failures, local search meta steps (and those skipped for a non-finite
        meta objective), and time (all, filtering, training, and the
        workers' summed ``fit_time`` and ``local_search_time``). A local search
        after the GP adds ``refined``, its fold fits and meta steps, and
        ``refine_time``.
    refine_results_ : list of dict
        Set by a local search after the GP (``local_search="winners"`` or
        :meth:`fit_refine`): per refined program its CV score before and
        after, the coefficients, whether the refined loss was kept, and time.
    classes_ : ndarray
        Class labels (classifiers).
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.datasets import load_iris
    >>> from skorch import NeuralNetClassifier
    >>> from metaloss_sk import LossSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> net = NeuralNetClassifier(torch.nn.Linear, module__in_features=4,
    ...                           module__out_features=3, max_epochs=3, verbose=0)
    >>> search = LossSearchCV(net, population_size=4, generations=2, random_state=0)
    >>> search.fit(X.astype(np.float32), y).best_loss_.task
    'multiclass'
    """

    def __init__(
        self, estimator, *, population_size=25, generations=50, tournament_size=4,
        function_set=EVOMAL_FUNCTION_SET, constants=(1.0, -1.0), const_range=None,
        init_depth=(2, 4), init_method="half and half", max_height=10,
        p_crossover=0.7, p_subtree_mutation=0.25, p_hoist_mutation=0.0, p_point_mutation=0.0,
        p_point_replace=0.05, mutation_depth=(0, 2), parsimony_coefficient=0.0, elitism=1,
        seed_programs="auto", hall_of_fame=10, max_epochs=None, max_steps=None,
        max_time=None, n_iter_no_change=None, max_evaluations=None, local_search=None,
        meta_steps=250, meta_lr=1e-3, unroll=1, refine_top_k=3, equivalence="gradient",
        rejection_steps=250, train_loop="auto",
        candidates_per_task=8, checkpoint=None, scoring=None, cv=3, refit=True, n_jobs=None,
        verbose=0, error_score=np.nan, random_state=None,
    ):
        self.estimator = estimator
        self.population_size = population_size
        self.generations = generations
        self.tournament_size = tournament_size
        self.function_set = function_set
        self.constants = constants
        self.const_range = const_range
        self.init_depth = init_depth
        self.init_method = init_method
        self.max_height = max_height
        self.p_crossover = p_crossover
        self.p_subtree_mutation = p_subtree_mutation
        self.p_hoist_mutation = p_hoist_mutation
        self.p_point_mutation = p_point_mutation
        self.p_point_replace = p_point_replace
        self.mutation_depth = mutation_depth
        self.parsimony_coefficient = parsimony_coefficient
        self.elitism = elitism
        self.seed_programs = seed_programs
        self.hall_of_fame = hall_of_fame
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.max_time = max_time
        self.n_iter_no_change = n_iter_no_change
        self.max_evaluations = max_evaluations
        self.local_search = local_search
        self.meta_steps = meta_steps
        self.meta_lr = meta_lr
        self.unroll = unroll
        self.refine_top_k = refine_top_k
        self.equivalence = equivalence
        self.rejection_steps = rejection_steps
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
    def fit(self, X, y):
        """Run the search, then refit the net with the best loss.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training data; cast to float32, as torch modules expect.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (any type; mapped to ``0..n_classes-1`` internally and
            back in ``predict``) or regression targets.

        Returns
        -------
        self : LossSearchCV
        """
        start = time.perf_counter()
        self._check_params()
        self._task = _task_of(self.estimator)
        X, y = self._validate_input(X, y)
        space = SearchSpace(self.function_set, self.constants, self.const_range)
        seeds = self._seed_programs()
        rng = check_random_state(self.random_state)
        n_splits = check_cv(self.cv, y, classifier=is_classifier(self.estimator)).get_n_splits(X, y)
        self._fold_seeds = rng.randint(np.iinfo(np.int32).max, size=n_splits)
        self._refit_seed = int(rng.randint(np.iinfo(np.int32).max))
        self.scorer_ = check_scoring(self.estimator, scoring=self.scoring)
        self._preflight(X, y, seeds[0] if seeds else CROSS_ENTROPY)

        evaluate = self._evaluator(X, y, self.local_search == "all")
        variation = Variation(self.p_crossover, self.p_subtree_mutation, self.p_hoist_mutation,
                              self.p_point_mutation, self.p_point_replace,
                              tuple(self.mutation_depth), self.max_height)
        self._signature = signature(self._search_settings(), X, y)
        state = self._resume(evaluate)
        if state is None:
            population = initial_population(space, self.population_size, seeds, rng,
                                            tuple(self.init_depth), self.init_method)
            state = {"population": population, "rng": rng, "generation": 0, "best": -math.inf, "stale": 0,
                     "done": False}
            self.history_ = []
        start -= state.get("elapsed", 0.0)
        with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel, self._progress(state) as bar:
            evaluate.parallel, evaluate.progress = parallel, bar
            evaluate._advanced = 0.0 if bar is None else float(bar.n)
            if not state["done"]:
                self._evolve(evaluate, space, variation, state, start)
            evaluate.progress = None
            self._finish(evaluate, time.perf_counter() - start)
            if self.local_search == "all":
                self._set_best(self._final_coefficients(X, y, self.best_loss_), self.best_score_)
                self.search_stats_["meta_steps"] += self.meta_steps
            elif self.local_search == "winners":
                self._refine(X, y, evaluate)
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        if self.verbose:
            print(f"[LossSearchCV] best loss: {self.best_loss_}  (score {self.best_score_:.4f})")
        return self

    def _evolve(self, evaluate, space, variation, state, start):
        """The generation loop: evaluate, report, stop or breed, checkpoint."""
        population, rng = state["population"], state["rng"]
        best, stale = state["best"], state["stale"]
        try:
            for generation in range(state["generation"], self.generations):
                fitness, stats = evaluate(population, generation)
                self.history_.append({"generation": generation, **stats,
                                      "elapsed": time.perf_counter() - start})
                self._report(self.history_[-1], evaluate)
                improved = stats["best_score"] > best
                best, stale = max(best, stats["best_score"]), 0 if improved else stale + 1
                # The next population is bred even after the last generation, so a
                # checkpoint can always continue (with more generations, say).
                penalty = self.parsimony_coefficient * np.array([len(p) for p in population])
                population = next_generation(population, fitness - penalty, space, variation, rng,
                                             self.tournament_size, self.elitism)
                self._save_checkpoint(evaluate, population, rng, generation + 1, best, stale,
                                      time.perf_counter() - start)
                if self._should_stop(stale, start, evaluate):
                    break
        except KeyboardInterrupt:
            if not evaluate.rows:
                raise
            warnings.warn(
                f"LossSearchCV was interrupted after {len(self.history_)} generation(s); the search "
                "stops here and uses the programs evaluated so far.", UserWarning, stacklevel=3)

    def _progress(self, state):
        """A tqdm bar over the candidates still to propose (a null context when quiet)."""
        if not self.verbose:
            return contextlib.nullcontext()
        total = self.population_size * self.generations
        return tqdm(total=total, initial=self.population_size * state["generation"], unit="candidate",
                    desc="LossSearchCV", dynamic_ncols=True, leave=True,
                    bar_format="{l_bar}{bar}| {n}/{total} [{elapsed}<{remaining}]")

    def _search_settings(self):
        """The parameters that decide a search's result (a checkpoint must match them)."""
        ignored = ("n_jobs", "verbose", "max_time", "checkpoint", "refit", "generations",
                   "n_iter_no_change", "max_evaluations")
        return {k: v for k, v in self.get_params(deep=False).items() if k not in ignored}

    def _save_checkpoint(self, evaluate, population, rng, generation, best, stale, elapsed):
        if self.checkpoint is None:
            return
        save_checkpoint(self.checkpoint, {
            "signature": self._signature, "generation": generation,
            "population": [str(p) for p in population], "rng": rng_to_json(rng),
            "fold_seeds": self._fold_seeds, "refit_seed": self._refit_seed,
            "best": best if math.isfinite(best) else None, "stale": stale, "elapsed": elapsed,
            "history": self.history_, "evaluator": evaluate.state(),
        })

    def _resume(self, evaluate):
        """The saved state of this search, restored into ``evaluate``; None to start afresh."""
        if self.checkpoint is None:
            return None
        state = load_checkpoint(self.checkpoint, self._signature)
        if state is None:
            return None
        self._fold_seeds = np.asarray(state["fold_seeds"])
        self._refit_seed = int(state["refit_seed"])
        self.history_ = state["history"]
        evaluate.restore(state["evaluator"])
        if self.verbose:
            print(f"[LossSearchCV] resuming from {self.checkpoint} at generation {state['generation']}")
        return {"population": [parse(p) for p in state["population"]], "rng": rng_from_json(state["rng"]),
                "generation": state["generation"], "best": -math.inf if state["best"] is None else state["best"],
                "stale": state["stale"], "done": state["generation"] >= self.generations,
                "elapsed": state["elapsed"]}

    def fit_refine(self, X, y):
        """Tune the coefficients of the best programs found (EvoMAL's local search).

        Each of the ``refine_top_k`` best distinct programs of the hall of fame
        becomes a loss with one coefficient per edge, learned by unrolled
        differentiation, and is rescored with the search's own CV protocol
        (same folds, same seeds). A refined loss is kept only where its CV
        score is at least its original's; ``best_loss_``, ``best_score_``,
        ``best_params_``, ``hall_of_fame_`` and (with ``refit=True``)
        ``best_estimator_`` are updated, and ``refine_results_`` records what
        happened.

        Parameters
        ----------
        X, y : array-like
            The data ``fit`` was given.

        Returns
        -------
        self : LossSearchCV
        """
        check_is_fitted(self, "cv_results_")
        self._check_params()
        X, y = self._validate_input(X, y, reset=False)
        evaluate = self._evaluator(X, y, local_search=False)
        with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel:
            evaluate.parallel = parallel
            self._refine(X, y, evaluate)
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        return self

    def _evaluator(self, X, y, local_search):
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        splits = list(cv.split(X, y))
        if len(splits) != len(self._fold_seeds):
            raise ValueError(f"cv gave {len(splits)} splits, expected {len(self._fold_seeds)}.")
        return Evaluator(self, X, y, splits, self._use_fast_loop(),
                          self._local_search_settings() if local_search else None)

    def _local_search_settings(self):
        return LocalSearch(meta_steps=self.meta_steps, meta_lr=self.meta_lr, unroll=self.unroll)

    def _refine(self, X, y, evaluate):
        """Refine the best programs, keep improvements, and update the best loss."""
        settings = self._local_search_settings()
        programs = [entry["program"] for entry in self.hall_of_fame_[: self.refine_top_k]]
        losses = [self._criterion(p) for p in programs]
        start = time.perf_counter()
        folds = evaluate.cross_validate(losses, settings)
        elapsed = time.perf_counter() - start
        per_program = elapsed / max(len(programs), 1)
        n_fits = len(programs) * len(evaluate.splits)
        stats = self.search_stats_
        stats["refined"] = stats.get("refined", 0) + len(programs)
        stats["fold_fits"] += n_fits
        stats["meta_steps"] += n_fits * self.meta_steps
        stats["refine_time"] = stats.get("refine_time", 0.0) + elapsed
        self.refine_results_ = []
        best_loss, best_score = self.best_loss_, self.best_score_
        for entry, loss, results in zip(self.hall_of_fame_, losses, folds):
            after = mean_score(results)
            kept = bool(np.isfinite(after) and after >= entry["mean_test_score"])
            refined = self._final_coefficients(X, y, loss) if kept else None
            self.refine_results_.append({
                "program": entry["program"], "score_before": entry["mean_test_score"],
                "score_after": after, "kept": kept,
                "coefficients": None if refined is None else refined.get_params()["coefficients"],
                "fold_coefficients": [r.coefficients for r in results], "time": per_program,
                "meta_nan_steps": sum(r.meta_nan_steps for r in results),
            })
            if kept:
                stats["meta_steps"] += self.meta_steps  # the final coefficients, learned on all the data
                entry.update(refined_score=after, coefficients=refined.get_params()["coefficients"],
                             infix=refined.infix())
                if after > best_score:
                    best_loss, best_score = refined, after
        self._set_best(best_loss, best_score)
        if self.verbose:
            for r in self.refine_results_:
                print(f"[LossSearchCV] local search {r['program']}: {r['score_before']:.4f} -> "
                      f"{r['score_after']:.4f}{' (kept)' if r['kept'] else ''}")

    def _final_coefficients(self, X, y, loss):
        """The loss with coefficients learned on all of ``X`` (20 % held out for the meta objective)."""
        return refine_loss(self.estimator, loss, X, y, self._refit_seed, self._local_search_settings()).loss

    def _set_best(self, loss, score):
        self.best_loss_ = loss
        self.best_score_ = float(score)
        self.best_params_ = loss.as_params()

    def _check_params(self):
        def integer(name, low, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}{' or None' if allow_none else ''}, "
                                 f"got {value!r}.")

        def probability(name):
            value = getattr(self, name)
            if not isinstance(value, Real) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")

        def height_range(name, low):
            value = getattr(self, name)
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or not all(isinstance(v, Integral) for v in value) or not low <= value[0] <= value[1]):
                raise ValueError(f"{name} must be a pair (low, high) of integers with {low} <= low <= high, "
                                 f"got {value!r}.")

        integer("population_size", 2)
        integer("generations", 1)
        integer("tournament_size", 1)
        if self.tournament_size > self.population_size:
            raise ValueError(f"tournament_size={self.tournament_size} is larger than "
                             f"population_size={self.population_size}; lower it or grow the population.")
        for name in ("p_crossover", "p_subtree_mutation", "p_hoist_mutation", "p_point_mutation",
                     "p_point_replace"):
            probability(name)
        total = self.p_crossover + self.p_subtree_mutation + self.p_hoist_mutation + self.p_point_mutation
        if total > 1 + 1e-12:
            raise ValueError(f"p_crossover + p_subtree_mutation + p_hoist_mutation + p_point_mutation "
                             f"= {total:g} exceeds 1; the remainder is the reproduction probability.")
        height_range("init_depth", 1)
        height_range("mutation_depth", 0)
        integer("max_height", 1)
        if self.max_height < self.init_depth[1]:
            raise ValueError(f"max_height={self.max_height} is below the initial height "
                             f"init_depth={tuple(self.init_depth)}; raise it to at least {self.init_depth[1]}.")
        if self.init_method not in ("half and half", "grow", "full"):
            raise ValueError(f"init_method must be 'half and half', 'grow' or 'full', got {self.init_method!r}.")
        if not isinstance(self.parsimony_coefficient, Real) or self.parsimony_coefficient < 0:
            raise ValueError(f"parsimony_coefficient must be a number >= 0, got {self.parsimony_coefficient!r}.")
        integer("elitism", 0)
        if self.elitism >= self.population_size:
            raise ValueError(f"elitism={self.elitism} must be smaller than population_size="
                             f"{self.population_size}, or nothing new is ever tried.")
        integer("hall_of_fame", 1)
        integer("max_epochs", 1, allow_none=True)
        integer("max_steps", 1, allow_none=True)
        integer("n_iter_no_change", 1, allow_none=True)
        integer("max_evaluations", 1, allow_none=True)
        integer("verbose", 0)
        if self.max_time is not None and (not isinstance(self.max_time, Real) or self.max_time <= 0):
            raise ValueError(f"max_time must be a positive number of seconds or None, got {self.max_time!r}.")
        if self.local_search not in _LOCAL_SEARCH:
            raise ValueError(f"local_search must be one of {_LOCAL_SEARCH}, got {self.local_search!r}.")
        integer("meta_steps", 1)
        integer("unroll", 1)
        integer("refine_top_k", 1)
        integer("candidates_per_task", 1)
        if not isinstance(self.meta_lr, Real) or isinstance(self.meta_lr, bool) or not self.meta_lr > 0:
            raise ValueError(f"meta_lr must be a positive number, got {self.meta_lr!r}.")
        if self.equivalence not in _EQUIVALENCE:
            raise ValueError(f"equivalence must be one of {_EQUIVALENCE}, got {self.equivalence!r}.")
        integer("rejection_steps", 0)
        if self.train_loop not in _TRAIN_LOOPS:
            raise ValueError(f"train_loop must be one of {_TRAIN_LOOPS}, got {self.train_loop!r}.")
        if not (self.error_score == "raise" or isinstance(self.error_score, Real)):
            raise ValueError(f"error_score must be 'raise' or a number, got {self.error_score!r}.")
        try:
            constants = [float(c) for c in self.constants]
        except (TypeError, ValueError):
            raise ValueError(f"constants must be a sequence of numbers, got {self.constants!r}.") from None
        if not all(math.isfinite(c) for c in constants):
            raise ValueError(f"constants must be finite, got {self.constants!r}.")
        if self.const_range is not None and (len(self.const_range) != 2
                                             or not self.const_range[0] <= self.const_range[1]):
            raise ValueError(f"const_range must be None or a pair (low, high), got {self.const_range!r}.")

    def _validate_input(self, X, y, reset=True):
        if y is None:
            raise ValueError("LossSearchCV needs targets: y is None.")
        X, y = validate_data(self, X, y, dtype=np.float32, order="C", allow_nd=True, ensure_min_samples=2,
                             reset=reset, multi_output=self._task == "regression",
                             y_numeric=self._task == "regression")
        y = np.ascontiguousarray(y)
        if self._task == "regression":
            self._y_1d = y.ndim == 1
            return X, y.reshape(len(y), -1).astype(np.float32)
        check_classification_targets(y)
        if not reset:
            if not np.isin(y, self.classes_).all():
                raise ValueError("y contains labels the search was not fitted on.")
            return X, self._encoder.transform(y).astype(np.float32 if self._task == "binary" else np.int64)
        classes = getattr(self.estimator, "classes", None)
        self._encoder = LabelEncoder().fit(y if classes is None else classes)
        if not np.isin(y, self._encoder.classes_).all():
            raise ValueError("y contains labels that are not in the estimator's `classes`.")
        self.classes_ = self._encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least two.")
        if self._task == "binary" and len(self.classes_) != 2:
            raise ValueError(f"NeuralNetBinaryClassifier needs exactly two classes, y has "
                             f"{len(self.classes_)}; use NeuralNetClassifier.")
        y = self._encoder.transform(y)
        return X, y.astype(np.float32 if self._task == "binary" else np.int64)

    def _seed_programs(self):
        if isinstance(self.seed_programs, str) and self.seed_programs == "auto":
            return [parse(SQUARED_ERROR if self._task == "regression" else CROSS_ENTROPY)]
        if isinstance(self.seed_programs, str):
            raise ValueError(f"seed_programs must be 'auto' or a list of programs, got the string "
                             f"{self.seed_programs!r}; wrap a single program in a list.")
        programs = [parse(p) for p in self.seed_programs]
        for p in programs:
            if not p.is_valid_loss:
                raise ValueError(f"seed program {str(p)!r} must use both y and yhat.")
        return programs

    def _use_fast_loop(self):
        """True for the fast loop; raises if it was asked for and cannot be used."""
        blockers = fast_path_blockers(self.estimator)
        if self.train_loop == "fast" and blockers:
            raise ValueError(f"train_loop='fast' cannot train this net: it {'; '.join(blockers)}. "
                             "Use train_loop='auto' or 'skorch'.")
        return self.train_loop == "fast" or (self.train_loop == "auto" and not blockers)

    def _criterion(self, program):
        return SymbolicLoss(str(program), task=self._task)

    def _preflight(self, X, y, program):
        """Fail early, with the net's own message, when the net cannot run a batch at all."""
        params = clone(self.estimator).get_params(deep=False)
        criterion_params = sorted(k for k in params if k.startswith("criterion__"))
        if criterion_params:
            raise ValueError(f"the estimator sets {', '.join(criterion_params)}, but LossSearchCV replaces "
                             "the criterion with each candidate loss; remove those settings.")
        params.update(criterion=self._criterion(program), train_split=None, verbose=0)
        net = type(self.estimator)(**params)
        torch.manual_seed(0)
        try:
            net.initialize()
            with torch.no_grad():
                n = min(len(X), 4)
                net.criterion_(net.infer(torch.as_tensor(X[:n], device=net.device)),
                               torch.as_tensor(y[:n], device=net.device))
        except Exception as exc:
            raise ValueError(
                f"the estimator cannot run one batch of this data with a symbolic loss: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _budget(self):
        epochs = self.max_epochs if self.max_epochs is not None else self.estimator.max_epochs
        return Budget(max_epochs=epochs, max_steps=self.max_steps)

    def _should_stop(self, stale, start, evaluate):
        if self.n_iter_no_change is not None and stale >= self.n_iter_no_change:
            return True
        if self.max_time is not None and time.perf_counter() - start >= self.max_time:
            return True
        return self.max_evaluations is not None and evaluate.n_trained >= self.max_evaluations

    def _report(self, entry, evaluate):
        if not self.verbose:
            return
        done = entry["generation"] + 1
        eta = entry["elapsed"] / done * (self.generations - done)
        tqdm.write(f"[LossSearchCV] gen {entry['generation']:>3}  best {entry['best_score']:.4f}  "
                   f"median {entry['median_score']:.4f}  trained {entry['trained']:>3}  "
                   f"cache hits {entry['cache_hits']:>3}  equivalent {entry['equivalent']:>3}  "
                   f"rejected {entry['rejected']:>3}  failures {entry['failures']:>3}  "
                   f"elapsed {entry['elapsed']:7.1f}s  eta {eta:7.1f}s")
        if self.verbose >= 2:
            for rank, (score, program) in enumerate(self._current_hall_of_fame(evaluate), 1):
                tqdm.write(f"    {rank:>2}. {score:.4f}  {program}")

    def _current_hall_of_fame(self, evaluate):
        rows = [r for r in evaluate.rows.values() if np.isfinite(r["mean_test_score"]) and not r["equivalent_to"]]
        rows.sort(key=lambda r: -r["mean_test_score"])
        return [(r["mean_test_score"], r["infix"]) for r in rows[: self.hall_of_fame]]

    def _finish(self, evaluate, elapsed):
        self.cv_results_ = evaluate.results()
        scores = np.nan_to_num(self.cv_results_["mean_test_score"], nan=-np.inf)
        self.best_index_ = int(np.argmax(scores))
        if not np.isfinite(scores[self.best_index_]):
            raise RuntimeError("every candidate loss failed to train; see cv_results_['status'] "
                               "(set error_score='raise' to see the first error).")
        self._set_best(evaluate.losses()[self.best_index_], self.cv_results_["mean_test_score"][self.best_index_])
        order = np.argsort(-scores, kind="stable")
        self.hall_of_fame_ = [
            {key: self.cv_results_[key][i] for key in
             ("program", "infix", "length", "depth", "generation", "mean_test_score", "std_test_score")}
            for i in order if np.isfinite(scores[i]) and not self.cv_results_["equivalent_to"][i]
        ][: self.hall_of_fame]
        totals = evaluate.totals
        self.search_stats_ = {
            "generations": len(self.history_),
            "proposed": sum(h["proposed"] for h in self.history_),
            "evaluations": totals["trained"],
            "fold_fits": totals["trained"] * len(evaluate.splits),
            "cache_hits": totals["cache_hits"],
            "equivalent": totals["equivalent"],
            "rejected": totals["rejected"],
            "failures": totals["failures"],
            "meta_steps": (totals["trained"] * len(evaluate.splits) * self.meta_steps
                           if self.local_search == "all" else 0),
            "meta_nan_steps": totals["meta_nan_steps"],
            "filter_time": totals["filter_time"],
            "train_time": totals["train_time"],
            "fit_time": totals["fit_time"],
            "local_search_time": totals["local_search_time"],
            "time": elapsed,
        }

    def _refit(self, X, y):
        params = clone(self.estimator).get_params(deep=False)
        params["criterion"] = self.best_loss_
        net = type(self.estimator)(**params)
        torch.manual_seed(self._refit_seed)
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

    def export_torch(self, name="learned_loss"):
        """Source of a standalone PyTorch function computing ``best_loss_`` (no metaloss_sk needed)."""
        check_is_fitted(self, "best_loss_")
        return to_torch_source(self.best_loss_, name)

    # ----------------------------------------------------------- delegation
    def _check_X(self, X):
        check_is_fitted(self, "best_estimator_")
        return validate_data(self, X, dtype=np.float32, order="C", allow_nd=True, reset=False)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with ``best_estimator_`` (labels mapped back to ``classes_``)."""
        X = self._check_X(X)
        y = self.best_estimator_.predict(X)
        if self._task == "regression":
            return y.reshape(len(y)) if self._y_1d and y.ndim == 2 and y.shape[1] == 1 else y
        return self.classes_[np.asarray(y).astype(np.int64)]

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from ``best_estimator_``."""
        X = self._check_X(X)
        return self.best_estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @available_if(_estimator_has("forward"))
    def forward(self, X):
        """Raw module outputs of ``best_estimator_`` as a tensor."""
        X = self._check_X(X)
        return self.best_estimator_.forward(X)

    def score(self, X, y):
        """Score ``best_estimator_`` on ``(X, y)`` with the search's scorer."""
        X = self._check_X(X)
        y = np.asarray(y)
        if self._task == "regression":
            y = y.reshape(len(y), -1).astype(np.float32)
        else:
            y = self._encoder.transform(y).astype(np.float32 if self._task == "binary" else np.int64)
        return float(self.scorer_(self.best_estimator_, X, y))

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
