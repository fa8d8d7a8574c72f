"""LossSearchCV: evolve a symbolic loss for a skorch net, scored by cross-validation."""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.compose import TransformedTargetRegressor
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, LabelEncoder, StandardScaler
from sklearn.utils import _safe_indexing, check_array, check_consistent_length, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from tqdm.auto import tqdm

from . import results, selection
from ._rows import is_dict, n_rows, placeholder, take, to_tensors
from ._validation import InstanceOf, Interval, Options, Pair, check
from .checkpoint import SearchState, check_writable, load_checkpoint, save_checkpoint, signature
from .engine import Evaluation, refine_on
from .evaluator import Evaluator, EvaluatorConfig
from .evolution import Variation, initial_population, next_generation
from .export import to_torch_source
from .local_search import LocalSearch
from .loss import SymbolicLoss, usual_loss
from .primitives import EVOMAL_FUNCTION_SET
from .program import SearchSpace, parse
from .training import Budget, Trainer, build_net, fast_path_blockers
from .zoo import known_losses

__all__ = ["LossSearchCV"]

#: EvoMAL's fitness budget: optimizer steps per candidate.
EVOMAL_STEPS = 500


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
        f"NeuralNetRegressor) or a Pipeline whose last step is one, got {type(net).__name__}."
    )


def _float32(X):
    """Rows as a dense float32 array (what a torch module takes)."""
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "best_estimator_"):
            return hasattr(self.best_estimator_, attr)
        return hasattr(self.estimator, attr)
    return check


def _remaining(n, total, rate, elapsed, max_time, per_generation):
    """Seconds the progress bar shows as remaining, or None when unknown.

    tqdm's estimate, ``(total - n) / rate`` candidates at ``rate`` per second,
    assumes every generation runs; with ``max_time`` the search stops after
    the generation during which ``max_time`` seconds passed (``elapsed`` have),
    so the estimate is capped by the time left, or, once that is spent, by the
    time the current generation of ``per_generation`` candidates needs to end.
    """
    estimate = (total - n) / rate if rate else None
    if max_time is None:
        return estimate
    generation_left = (-n % per_generation) / rate if rate else 0.0
    cap = max(max_time - elapsed, generation_left)
    return cap if estimate is None else min(estimate, cap)


class _Bar(tqdm):
    """The search's tqdm bar; its ``{left}`` field is :func:`_remaining`, capped by ``max_time``."""

    def __init__(self, *args, start, max_time, per_generation, **kwargs):
        self._search_start, self._max_time, self._per_generation = start, max_time, per_generation
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self):
        d = super().format_dict
        left = _remaining(d.get("n") or 0, d.get("total") or 0, d.get("rate"), time.perf_counter() - self._search_start,
                          self._max_time, self._per_generation)
        return {**d, "left": "?" if left is None else self.format_interval(left)}


class _Progress:
    """A tqdm bar over proposed candidates that accepts fractions of one (a fold's share)."""

    def __init__(self, bar):
        self.bar, self.done = bar, float(bar.n)

    def __call__(self, n):
        self.done += n
        self.bar.update(min(int(round(self.done, 6)), self.bar.total) - self.bar.n)


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
    min_resources : "auto" or int, default="auto"
        The fitness budget of the genetic search: optimizer steps each
        candidate trains for on each fold. "auto" is EvoMAL's 500, or the
        final budget if that is smaller.
    max_resources : "auto" or int, default="auto"
        The final budget, at which the winner is chosen: optimizer steps, or
        "auto" for the net's own ``max_epochs`` over a fold's training rows.
    factor : float, default=3
        Each rung of the final selection trains ``factor`` times longer than
        the one before, with a ``factor`` times smaller field, from the
        fitness budget up to the final one.
    screening : "auto", int or None, default="auto"
        A rung below the fitness budget inside every generation: each new
        program first trains for this many optimizer steps, without local
        search, and only the best ``1 / factor`` of them (and the seed
        programs) go on to the local search and the fitness budget. The
        others keep their screening score as fitness, below every promoted
        program's, and never enter the final selection. None screens
        nothing. "auto" screens for the fitness budget divided by ``factor``
        where every candidate gets the local search (EvoMAL: a promoted
        program costs about three trainings there, and screening found
        better winners at a third of the time), and not otherwise: without
        the local search it saved a quarter of a GP-LFL search on digits and
        cost 0.5 points of test error (benchmarks/results/screening_quality.md).
    n_finalists : int, default=3
        Programs at the final rung (besides the seed programs).
    final_seeds : int, default=2
        Weight seeds per fold at the final rung.
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
    gradient_bound : float or None, default=10
        A program whose gradient with respect to the net's outputs is not
        finite, or steeper than this many times the usual loss's steepest,
        anywhere on a grid over the outputs it can meet (probabilities in
        [0, 1]; standardised targets and outputs in [-4, 4] for regression)
        is rejected before any training, and the local search keeps no
        coefficients that make a loss so. None turns the check off. At 10,
        squared-log losses such as ``(log(y + yhat - 1) - ...)^2``, which
        learn fast at a short budget but diverged on LeNet-5 in the quality
        benchmark (their gradient is 30 to 40 times cross-entropy's near
        ``yhat = 0``), are rejected.
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
    equivalence : {"none", "exact", "symbolic", "gradient"}, default="gradient"
        Which programs share one evaluation: none ("none": every proposed
        program that passes the gradient checks is trained, a repeat again,
        with the same seeds and so the same scores; a baseline for what the
        cache saves); identical text
        only ("exact", the reference's cache); also programs with the same
        sympy canonical form ("symbolic"); also programs with the same
        gradient with respect to the network's outputs on 100 probe rows of
        the first fold ("gradient": losses that differ by a constant, for
        instance). Whatever the setting, a loss whose gradient there is zero
        or not finite is rejected without training. With a local search on
        every candidate, where equal functions of different shapes learn
        different coefficients, "symbolic" and "gradient" share only
        programs that differ by swapped arguments of commutative primitives
        (``add``, ``mul``, ``min``, ``max``).
    rejection_steps : int, default=250
        EvoMAL's rejection protocol, run before any training: the probe
        rows' outputs are optimised directly for up to this many Adam steps
        (lr 0.01), and a loss that does not lower the task error there is
        rejected. 0 turns it off. EvoMAL uses 1000; on 300 random programs on
        digits, 250 rejected exactly the same ones at a quarter of the cost.
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
    >>> from metaloss_sk import LossSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    >>> net = NeuralNetClassifier(torch.nn.Linear, module__in_features=4, module__out_features=3,
    ...                           max_epochs=10, lr=0.1, train_split=None, verbose=0)
    >>> search = LossSearchCV(net, population_size=6, generations=2, random_state=0)
    >>> search.fit(X, y).best_loss_.task
    'multiclass'
    """

    _parameter_constraints = {
        "population_size": [Interval(Integral, 2)],
        "generations": [Interval(Integral, 1)],
        "tournament_size": [Interval(Integral, 1)],
        "init_depth": [Pair(1)],
        "init_method": [Options(("half and half", "grow", "full"))],
        "max_height": [Interval(Integral, 1)],
        "p_crossover": [Interval(Real, 0, 1)],
        "p_subtree_mutation": [Interval(Real, 0, 1)],
        "p_hoist_mutation": [Interval(Real, 0, 1)],
        "p_point_mutation": [Interval(Real, 0, 1)],
        "p_point_replace": [Interval(Real, 0, 1)],
        "mutation_depth": [Pair(0)],
        "parsimony_coefficient": [Interval(Real, 0)],
        "elitism": [Interval(Integral, 0)],
        "hall_of_fame": [Interval(Integral, 1)],
        "min_resources": [Options(("auto",)), Interval(Integral, 1)],
        "max_resources": [Options(("auto",)), Interval(Integral, 1)],
        "factor": [Interval(Real, 1, None, closed="neither")],
        "screening": [Options(("auto",)), Interval(Integral, 1), None],
        "n_finalists": [Interval(Integral, 1)],
        "final_seeds": [Interval(Integral, 1)],
        "gradient_bound": [Interval(Real, 0, None, closed="neither"), None],
        "standardize_target": [Options((True, False))],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1), None],
        "max_evaluations": [Interval(Integral, 1), None],
        "local_search": [Options(("all", "winners")), InstanceOf(LocalSearch), None],
        "equivalence": [Options(("none", "exact", "symbolic", "gradient"))],
        "rejection_steps": [Interval(Integral, 0)],
        "train_loop": [Options(("auto", "fast", "skorch"))],
        "candidates_per_task": [Interval(Integral, 1)],
        "verbose": [Interval(Integral, 0)],
        "error_score": [Options(("raise",)), Interval(Real)],
        "refit": [Options((True, False)), InstanceOf(str), InstanceOf(Callable)],
        "search_lr": [Options(("net", "tuned"))],
        "margin": [Options(("se",)), Interval(Real, 0)],
    }

    def __init__(
        self, estimator, *, population_size=25, generations=50, tournament_size=4,
        function_set=EVOMAL_FUNCTION_SET, constants=(1.0, -1.0), const_range=None,
        init_depth=(2, 4), init_method="half and half", max_height=10,
        p_crossover=0.7, p_subtree_mutation=0.25, p_hoist_mutation=0.0, p_point_mutation=0.0,
        p_point_replace=0.05, mutation_depth=(0, 2), parsimony_coefficient=0.0, elitism=1,
        seed_programs="auto", hall_of_fame=10, min_resources="auto", max_resources="auto", factor=3,
        screening="auto", n_finalists=3, final_seeds=2, baseline_lrs="auto", search_lr="tuned", margin="se",
        gradient_bound=10.0, standardize_target=True,
        max_time=None, n_iter_no_change=None, max_evaluations=None, local_search=None,
        equivalence="gradient", rejection_steps=250, train_loop="auto", candidates_per_task=8,
        checkpoint=None, scoring=None, cv=3, refit=True, n_jobs=None, verbose=0, error_score=np.nan,
        random_state=None,
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
        self.min_resources = min_resources
        self.max_resources = max_resources
        self.factor = factor
        self.screening = screening
        self.n_finalists = n_finalists
        self.final_seeds = final_seeds
        self.baseline_lrs = baseline_lrs
        self.search_lr = search_lr
        self.margin = margin
        self.gradient_bound = gradient_bound
        self.standardize_target = standardize_target
        self.max_time = max_time
        self.n_iter_no_change = n_iter_no_change
        self.max_evaluations = max_evaluations
        self.local_search = local_search
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
            ``X`` in its own ``get_loss`` trains every candidate that way (see
            the README's "Weighted rows").
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
        self._forget_fit()
        self._check_params()
        if self.checkpoint is not None:
            check_writable(self.checkpoint)
        self._task = _task_of(self._net)
        X, y = self._validate_input(X, y)
        space = SearchSpace(self.function_set, self.constants, self.const_range)
        seeds = self._seed_programs()
        rng = check_random_state(self.random_state)
        splits = self._splits(X, y)
        fold_seeds = rng.randint(np.iinfo(np.int32).max, size=len(splits))
        refit_seed = int(rng.randint(np.iinfo(np.int32).max))
        self._scorer, self._other_scorers, self.scorer_ = self._scorers()
        # The net's rows: all of them (for the winner's final local search), and per fold (for the evaluator).
        X_all, (X_folds, y_folds, splits) = self._net_rows(X, y), self._fold_rows(X, y, splits)
        self._preflight(X_all, y)
        variation = Variation(self.p_crossover, self.p_subtree_mutation, self.p_hoist_mutation,
                              self.p_point_mutation, self.p_point_replace,
                              tuple(self.mutation_depth), self.max_height)
        self._signature = signature(self._search_settings(), X_all, y)
        state = load_checkpoint(self.checkpoint, self._signature) if self.checkpoint is not None else None
        resumed = state is not None
        if state is None:
            state = SearchState(population=initial_population(space, self.population_size, seeds, rng,
                                                              tuple(self.init_depth), self.init_method),
                                rng=rng, fold_seeds=[int(s) for s in fold_seeds], refit_seed=refit_seed)
        elif self.verbose:
            tqdm.write(f"[LossSearchCV] resuming from {self.checkpoint} at generation {state.generation}")
        self._state = state
        self.history_ = state.history
        config = self._config(state, splits, seeds, self._net)
        bar = self._progress_bar(state.generation, start)
        try:
            with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel:
                baseline = None
                self.search_lr_ = float(self._net.lr)
                if self.search_lr == "tuned":
                    baseline = self._usual_baseline(Evaluator(config, X_folds, y_folds, splits, parallel))
                    self.search_lr_ = self._tuned_lr(baseline)
                    config = self._config(state, splits, seeds, self._search_net())
                evaluate = Evaluator(config, X_folds, y_folds, splits, parallel, progress=bar and _Progress(bar))
                if resumed:
                    evaluate.restore(state.evaluator)
                interrupted = self._evolve(evaluate, space, variation, state, start)
                if bar is not None:
                    bar.close()
                    bar = None
                self._select(evaluate, interrupted, X_all, y)
                if self.local_search is not None and self._local_search_settings().candidates == "winners":
                    self._refine(evaluate, X_all, y)
                self._finish(evaluate, time.perf_counter() - start)
                self.baseline_ = None
                if not interrupted:
                    baseline = baseline or self._usual_baseline(evaluate)
                    self.baseline_ = {**baseline, "found_split_scores": [float(s) for s in self._best_split_scores],
                                      "search_lr": self.search_lr_, "best_lr": self.best_lr_,
                                      "known_losses": self._known_scores(evaluate),
                                      "contest": self._contest}
        finally:
            if bar is not None:
                bar.close()
        self._state.evaluator = evaluate.state()
        if self.refit:
            self.best_estimator_ = self._refit(X, y)
        if self.verbose:
            for line in results.summary_lines(self.best_loss_, self.best_score_, self._best_split_scores,
                                              self.baseline_):
                tqdm.write(line)
        return self

    #: The private state a fit sets (beside its attributes ending in "_"); a new one belongs here too.
    _FITTED_STATE = ("_task", "_scorer", "_other_scorers", "_signature", "_state", "_best_split_scores",
                     "_input_keys", "_y_1d", "_encoder", "_seed_names", "_contest")

    def _forget_fit(self):
        """Remove what an earlier ``fit`` or ``fit_refine`` left (fitted attributes and private state, such as
        ``refine_results_``, which ``_finish`` applies), so that a fit starts as on a fresh object.

        sklearn's own private attributes (a Pipeline's callback context, metadata requests) stay.
        """
        params = self.get_params(deep=False)
        for name in list(vars(self)):
            if name in self._FITTED_STATE or (name.endswith("_") and not name.startswith("_") and name not in params):
                delattr(self, name)

    def _evolve(self, evaluate, space, variation, state, start):
        """The generation loop: evaluate, report, stop or breed, checkpoint. True if interrupted."""
        try:
            for generation in range(state.generation, self.generations):
                max_new = (None if self.max_evaluations is None
                           else max(self.max_evaluations - evaluate.n_trained, 0))
                fitness, stats = evaluate.generation(state.population, generation, max_new)
                state.history.append({"generation": generation, **stats,
                                      "elapsed": time.perf_counter() - start + state.elapsed})
                self._report(state.history[-1], evaluate)
                improved = stats["best_score"] > state.best
                state.best = float(np.fmax(state.best, stats["best_score"]))
                state.stale = 0 if improved else state.stale + 1
                # The next population is bred even after the last generation, so a
                # checkpoint can always continue (with more generations, say).
                penalty = self.parsimony_coefficient * np.array([len(p) for p in state.population])
                state.population = next_generation(state.population, fitness - penalty, space, variation,
                                                   state.rng, self.tournament_size, self.elitism)
                state.generation = generation + 1
                if self.checkpoint is not None:
                    saved = replace(state, elapsed=state.history[-1]["elapsed"], evaluator=evaluate.state())
                    save_checkpoint(self.checkpoint, saved, self._signature)
                if self._should_stop(state, start, evaluate):
                    break
        except KeyboardInterrupt:
            if not evaluate.rows:
                raise
            warnings.warn(
                f"LossSearchCV was interrupted after {len(state.history)} generation(s); the search "
                "stops here and takes the best program at the fitness budget, without the final selection.",
                UserWarning, stacklevel=3)
            return True
        return False

    def _should_stop(self, state, start, evaluate):
        if self.n_iter_no_change is not None and state.stale >= self.n_iter_no_change:
            return True
        if self.max_time is not None and time.perf_counter() - start >= self.max_time:
            return True
        return self.max_evaluations is not None and evaluate.n_trained >= self.max_evaluations

    def _report(self, entry, evaluate):
        if not self.verbose:
            return
        tqdm.write(results.generation_line(entry, self.generations, self.max_time))
        if self.verbose >= 2:
            for rank, entry in enumerate(results.hall_of_fame(evaluate.rows.values(), self.hall_of_fame), 1):
                tqdm.write(f"    {rank:>2}. {entry['mean_test_score']:.4f}  {entry['infix']}")

    def _progress_bar(self, generation, start):
        """A tqdm bar over the candidates still to propose (None when quiet); ``start``: when ``fit`` started.

        Every verbose line goes through ``tqdm.write`` so it never splits the bar.
        """
        if not self.verbose:
            return None
        return _Bar(total=self.population_size * self.generations, initial=self.population_size * generation,
                    unit="candidate", desc="LossSearchCV", dynamic_ncols=True, leave=True,
                    disable=None,  # no bar when stderr is not a terminal (logs): the lines alone
                    bar_format="{l_bar}{bar}| {n}/{total} [{elapsed}<{left}]",
                    start=start, max_time=self.max_time, per_generation=self.population_size)

    # ----------------------------------------------------------- budgets
    def _budgets(self, n_train):
        """The fitness budget and the final budget, in optimizer steps over ``n_train`` rows."""
        net = self._net
        final = (Budget(net.max_epochs) if self.max_resources == "auto"
                 else Budget(net.max_epochs, self.max_resources))
        final_steps = final.steps(n_train, net.batch_size)
        steps = EVOMAL_STEPS if self.min_resources == "auto" else self.min_resources
        fitness = final if steps >= final_steps else Budget(net.max_epochs, steps)
        return fitness, final

    def _screening_budget(self, n_train):
        """The screening budget inside each generation, or None ("auto" screens only before a local search)."""
        if self.screening is None or (self.screening == "auto" and self._every_candidate_settings() is None):
            return None
        fitness = self._budgets(n_train)[0]
        fitness_steps = fitness.steps(n_train, self._net.batch_size)
        screen = (fitness.shortened(self.factor, n_train, self._net.batch_size) if self.screening == "auto"
                  else Budget(self._net.max_epochs, self.screening))
        if screen.max_steps >= fitness_steps:
            raise ValueError(f"screening={self.screening!r} gives {screen.max_steps} optimizer steps, not fewer than "
                             f"the fitness budget's {fitness_steps} (min_resources={self.min_resources!r}): "
                             "give fewer steps, or screening=None.")
        return screen

    def _rungs(self, n_train):
        """Budgets of the final selection's rungs, the last the final budget."""
        return selection.rungs(*self._budgets(n_train), n_train, self._net.batch_size, self.factor)

    def _config(self, state, splits, seeds, net):
        fast = self._use_fast_loop()
        fitness, _ = self._budgets(len(splits[0][0]))
        evaluation = Evaluation(
            trainer=Trainer(net, fast), task=self._task, scorer=self._scorer, other_scorers=self._other_scorers,
            error_score=self.error_score, standardize=self._task == "regression" and self.standardize_target,
            local_search=self._every_candidate_settings(),
            local_search_budget=fitness, gradient_bound=self.gradient_bound)
        return EvaluatorConfig(
            evaluation=evaluation, fold_seeds=tuple(state.fold_seeds), budget=fitness, n_jobs=self.n_jobs,
            candidates_per_task=self.candidates_per_task, equivalence=self.equivalence,
            rejection_steps=self.rejection_steps, gradient_bound=self.gradient_bound,
            seed_programs=tuple(str(p) for p in seeds), screening=self._screening_budget(len(splits[0][0])),
            factor=self.factor)

    # ----------------------------------------------------------- final selection
    def _select(self, evaluate, interrupted, X, y):
        """The final selection (unless interrupted) and the best loss; ``X, y``: all rows, as the net sees them."""
        budgets = [] if interrupted else self._rungs(len(evaluate.splits[0][0]))
        self.n_resources_, self.n_candidates_ = selection.successive_halving(
            evaluate, budgets, self.n_finalists, self.factor, self.final_seeds)
        rows = list(evaluate.rows.values())
        try:
            best = selection.winner(rows, str(usual_loss(self._task).program_))
        except RuntimeError:
            self.cv_results_ = results.cv_results(rows, len(evaluate.splits))
            raise
        split_scores, self.best_lr_, self._contest = best.last.scores, self.search_lr_, None
        if callable(self.refit):
            best = rows[self._refit_choice(rows, len(evaluate.splits))]
            split_scores = best.last.scores
        elif best.status == "ok":
            tuned = budgets and self.search_lr == "tuned"
            grid = selection.learning_rates(self.baseline_lrs, float(self._net.lr))
            neighbours = selection.neighbour_rates(grid, self.search_lr_) if tuned else []
            outcome = selection.contest_at_rates(evaluate, rows, evaluate.config.seed_programs, self.margin,
                                                 budgets[-1] if budgets else None, self.final_seeds, self.search_lr_,
                                                 neighbours)
            if outcome is not None:
                best, self.best_lr_, split_scores, self._contest = outcome
        loss = best.loss
        seeded = str(best.program) in evaluate.config.seed_programs
        if evaluate.config.evaluation.local_search is not None and best.status == "ok" and not seeded:
            loss = refine_on(evaluate.config.evaluation, loss, X, y, self._state.refit_seed)
        score = float(np.mean(split_scores)) if best.status == "ok" else float(np.mean(best.last.scores))
        self._set_best(loss, score, split_scores)
        self.best_index_ = rows.index(best)

    def _scorers(self):
        """``(selecting scorer, other (name, scorer) pairs, scorer_)``; ``scorer_`` is a dict for multi-metric."""
        if isinstance(self.scoring, (list, tuple, set, dict)):
            named = dict(self.scoring) if isinstance(self.scoring, dict) else {s: s for s in self.scoring}
            if not named or not all(isinstance(name, str) for name in named):
                raise ValueError(f"multi-metric scoring must be a non-empty list of scorer names or a dict of name "
                                 f"to scorer, got {self.scoring!r}.")
            scorers = {name: check_scoring(self._net, scoring=s) for name, s in named.items()}
            if not isinstance(self.refit, str) or self.refit not in scorers:
                raise ValueError(f"with multi-metric scoring, refit must name the metric that selects the loss, "
                                 f"one of {sorted(scorers)}; got refit={self.refit!r}.")
            return scorers[self.refit], tuple(scorers.items()), scorers
        if isinstance(self.refit, str):
            raise ValueError(f"refit={self.refit!r} names a metric, but scoring is a single metric; give scoring "
                             "a list or dict of metrics, or use refit=True.")
        scorer = check_scoring(self._net, scoring=self.scoring)
        return scorer, (), scorer

    def _refit_choice(self, rows, n_splits):
        """The row a callable ``refit`` picks from ``cv_results_``, checked."""
        index = self.refit(results.cv_results(rows, n_splits))
        if isinstance(index, bool) or not isinstance(index, Integral) or not 0 <= index < len(rows):
            raise ValueError(f"refit={self.refit!r} returned {index!r}; a refit callable must return a row "
                             f"index of cv_results_ (0 to {len(rows) - 1}).")
        if not math.isfinite(rows[index].score):
            raise ValueError(f"refit={self.refit!r} chose row {index} ({rows[index].program}), whose status is "
                             f"{rows[index].status!r}; choose a row with a finite mean_test_score.")
        return int(index)

    def _usual_baseline(self, evaluate):
        """The usual loss over the learning rates, tuned by successive halving (``baseline_``'s first part).

        ``evaluate`` trains at the net's own learning rate unless told another.
        """
        net_lr = float(self._net.lr)
        lrs = selection.learning_rates(self.baseline_lrs, net_lr)
        final = self._rungs(len(evaluate.splits[0][0]))[-1]
        return selection.tune_learning_rate(evaluate, usual_loss(self._task), final, lrs, self.final_seeds, net_lr)

    def _known_scores(self, evaluate):
        """The seed programs at the final budget and the search's learning rate: ``baseline_["known_losses"]``."""
        out = []
        for program in evaluate.config.seed_programs:
            row = evaluate.rows.get(program)
            row = row and (evaluate.rows.get(row.equivalent_to) or row)
            if row is None or row.last is None:
                continue
            out.append({"name": self._seed_names.get(program, program), "program": program,
                        "n_resources": int(row.last.n_resources), "mean_test_score": row.score,
                        "split_scores": [float(v) for v in row.last.scores]})
        return out

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
        where its CV score there is at least the program's own; ``best_loss_``,
        ``best_score_``, ``best_params_``, ``hall_of_fame_``, ``baseline_``'s
        ``found_split_scores`` and (with ``refit=True``) ``best_estimator_``
        are updated, and ``refine_results_`` records what happened.

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
        if local_search is not None:
            if not isinstance(local_search, LocalSearch):
                raise ValueError(f"local_search must be a LocalSearch or None, got {local_search!r}.")
            local_search.check()
        X, y = self._validate_input(X, y, reset=False)
        splits = self._splits(X, y)
        if len(splits) != len(self._state.fold_seeds):
            raise ValueError(f"cv gave {len(splits)} splits, expected {len(self._state.fold_seeds)}.")
        X_folds, y_folds, splits = self._fold_rows(X, y, splits)
        with Parallel(n_jobs=self.n_jobs, return_as="generator") as parallel:
            evaluate = Evaluator(self._config(self._state, splits, self._seed_programs(), self._search_net()),
                                 X_folds, y_folds, splits, parallel)
            evaluate.restore(self._state.evaluator)
            self._refine(evaluate, self._net_rows(X, y), y, local_search)
            self._state.evaluator = evaluate.state()
        if self.baseline_ is not None:
            self.baseline_["found_split_scores"] = [float(s) for s in self._best_split_scores]
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

    def _refine(self, evaluate, X, y, settings=None):
        """Refine the best programs at the final budget, keep improvements, and update the best loss."""
        settings = settings or self._local_search_settings()
        final = self._rungs(len(evaluate.splits[0][0]))[-1]
        rows = [evaluate.rows[entry["program"]] for entry in results.hall_of_fame(evaluate.rows.values(),
                                                                                    settings.top_k)]
        start = time.perf_counter()
        refined = selection.refine(evaluate, rows, settings, final, self.final_seeds)
        elapsed = time.perf_counter() - start
        self.refine_results_ = []
        for row, (losses, split_scores, after) in zip(rows, refined):
            # A refined loss replaces its program, and then the best loss, only by more than the margin.
            kept, difference, need = selection.beats(split_scores, row.last.scores, self.margin)
            loss = refine_on(replace(evaluate.config.evaluation, local_search=settings, local_search_budget=final),
                             row.loss, X, y, self._state.refit_seed) if kept else None
            self.refine_results_.append({
                "program": str(row.program), "score_before": row.score, "score_after": after, "kept": kept,
                "difference": difference, "margin": need,
                "coefficients": None if loss is None else loss.get_params()["coefficients"],
                "fold_coefficients": [refined_loss.get_params()["coefficients"] for refined_loss in losses],
                "time": elapsed / max(len(rows), 1),
            })
            same = str(row.program) == str(self.best_loss_.program_)
            if kept and (same or selection.beats(split_scores, self._best_split_scores, self.margin)[0]):
                self._set_best(loss, after, split_scores)
        if self.verbose:
            for r in self.refine_results_:
                tqdm.write(f"[LossSearchCV] local search {r['program']}: {r['score_before']:.4f} -> "
                      f"{r['score_after']:.4f}{' (kept)' if r['kept'] else ''}")
        if hasattr(self, "hall_of_fame_"):
            self._finish(evaluate, self.search_stats_["time"])

    def _finish(self, evaluate, elapsed):
        rows = list(evaluate.rows.values())
        self.cv_results_ = results.cv_results(rows, len(evaluate.splits))
        self.hall_of_fame_ = results.hall_of_fame(rows, self.hall_of_fame)
        for entry, refined in ((e, r) for e in self.hall_of_fame_ for r in getattr(self, "refine_results_", [])
                               if r["kept"] and r["program"] == e["program"]):
            entry.update(mean_test_score=refined["score_after"], coefficients=refined["coefficients"])
        meta_steps = self._local_search_settings().meta_steps if evaluate.config.evaluation.local_search else 0
        self.search_stats_ = results.search_stats(self.history_, evaluate.totals, len(evaluate.splits), elapsed,
                                                  meta_steps)
        self.search_stats_["train_loop"] = evaluate.config.evaluation.trainer.loop(evaluate.X)

    def _set_best(self, loss, score, split_scores):
        self.best_loss_ = loss
        self.best_score_ = float(score)
        self.best_params_ = loss.as_params()
        self._best_split_scores = [float(s) for s in split_scores]

    # ----------------------------------------------------------- checks and set-up
    def _check_params(self):
        check(self.get_params(deep=False), self._parameter_constraints)
        if isinstance(self.local_search, LocalSearch):
            self.local_search.check()
        if self.tournament_size > self.population_size:
            raise ValueError(f"tournament_size={self.tournament_size} is larger than "
                             f"population_size={self.population_size}; lower it or grow the population.")
        total = self.p_crossover + self.p_subtree_mutation + self.p_hoist_mutation + self.p_point_mutation
        if total > 1 + 1e-12:
            raise ValueError(f"p_crossover + p_subtree_mutation + p_hoist_mutation + p_point_mutation "
                             f"= {total:g} exceeds 1; the remainder is the reproduction probability.")
        if self.max_height < self.init_depth[1]:
            raise ValueError(f"max_height={self.max_height} is below the initial height "
                             f"init_depth={tuple(self.init_depth)}; raise it to at least {self.init_depth[1]}.")
        if self.elitism >= self.population_size:
            raise ValueError(f"elitism={self.elitism} must be smaller than population_size="
                             f"{self.population_size}, or nothing new is ever tried.")
        if isinstance(self.max_resources, Integral) and isinstance(self.min_resources, Integral) \
                and self.min_resources > self.max_resources:
            raise ValueError(f"min_resources={self.min_resources} exceeds max_resources={self.max_resources}; "
                             "the fitness budget cannot be longer than the final one.")
        if self.baseline_lrs is not None and not isinstance(self.baseline_lrs, str):
            try:
                lrs = [float(v) for v in self.baseline_lrs]
            except (TypeError, ValueError):
                lrs = []
            if not lrs or not all(math.isfinite(v) and v > 0 for v in lrs):
                raise ValueError(f"baseline_lrs must be 'auto', None or a sequence of positive learning rates, "
                                 f"got {self.baseline_lrs!r}.")
        elif isinstance(self.baseline_lrs, str) and self.baseline_lrs != "auto":
            raise ValueError(f"baseline_lrs must be 'auto', None or a sequence of positive learning rates, "
                             f"got {self.baseline_lrs!r}.")
        try:
            constants = [float(c) for c in self.constants]
        except (TypeError, ValueError):
            raise ValueError(f"constants must be a sequence of numbers, got {self.constants!r}.") from None
        if not all(math.isfinite(c) for c in constants):
            raise ValueError(f"constants must be finite, got {self.constants!r}.")
        if self.const_range is not None and (len(self.const_range) != 2
                                             or not self.const_range[0] <= self.const_range[1]):
            raise ValueError(f"const_range must be None or a pair (low, high), got {self.const_range!r}.")
        if getattr(self._net, "train_split", None) is not None:
            raise ValueError(f"the net's train_split is {self._net.train_split!r} (skorch's default holds out 20 % "
                             "of every fit for validation), so the refit net would train on fewer rows than the "
                             "candidates it was chosen by. LossSearchCV does its own cross-validation (cv): pass "
                             "train_split=None to the net.")

    @property
    def _net(self):
        """The skorch net: the estimator, or the last step of a Pipeline."""
        return self.estimator.steps[-1][1] if isinstance(self.estimator, Pipeline) else self.estimator

    def _preprocessing(self):
        """An unfitted clone of the Pipeline's steps before the net, or None."""
        if not isinstance(self.estimator, Pipeline) or len(self.estimator.steps) < 2:
            return None
        return clone(self.estimator[:-1])

    def _net_rows(self, X, y):
        """All rows as the net sees them: through the Pipeline's steps fitted on them, as float32."""
        steps = self._preprocessing()
        return X if steps is None else _float32(steps.fit(X, y).transform(X))

    def _fold_rows(self, X, y, splits):
        """``(X, y, splits)`` for the evaluator: each fold's rows through steps fitted on its training rows.

        Without preprocessing, the data and splits as they are. With it, one
        block of rows per fold (every row, transformed by the steps fitted on
        that fold's training rows, so its test rows never inform them) and
        each fold's splits shifted into its block: the evaluator indexes rows
        as always, and nothing leaks across folds.
        """
        steps = self._preprocessing()
        if steps is None:
            return X, y, splits
        blocks = [_float32(clone(steps).fit(_safe_indexing(X, train), y[train]).transform(X))
                  for train, _ in splits]
        if len({block.shape[1:] for block in blocks}) > 1:
            raise ValueError(f"the Pipeline's steps give a different number of features on different folds "
                             f"({sorted({block.shape[1] for block in blocks})}); fix the categories (for "
                             "OneHotEncoder, pass categories= or handle_unknown='ignore').")
        n = len(y)
        return (np.concatenate(blocks), np.concatenate([y] * len(splits)),
                [(train + k * n, test + k * n) for k, (train, test) in enumerate(splits)])

    def _splits(self, X, y):
        """The ``cv`` splits; a dict ``X`` is split by its number of rows (sklearn's splitters take arrays)."""
        rows = placeholder(X) if is_dict(X) else X
        return list(check_cv(self.cv, y, classifier=is_classifier(self.estimator)).split(rows, y))

    def _validate_input(self, X, y, reset=True):
        if y is None:
            raise ValueError("LossSearchCV needs targets: y is None.")
        if reset:
            self._input_keys = None  # a dict's keys, recorded by _dict_rows
        if is_dict(X) or self._preprocessing() is not None:
            y = check_array(y, ensure_2d=False, dtype="numeric" if self._task == "regression" else None,
                            ensure_min_samples=2, input_name="y")
            if not is_dict(X):  # the Pipeline's steps take the rows as they are
                validate_data(self, X, skip_check_array=True, reset=reset)
                check_consistent_length(X, y)
            elif self._preprocessing() is not None:
                raise ValueError(f"X is a dict of arrays ({', '.join(map(repr, X))}), but the estimator is a "
                                 "Pipeline, whose steps take one array or DataFrame; give the net alone or "
                                 "one array.")
            else:
                X = self._dict_rows(X, reset)
                if len(y) != n_rows(X):
                    raise ValueError(f"X's arrays have {n_rows(X)} rows and y has {len(y)}; give one target "
                                     "per row.")
        else:
            X, y = validate_data(self, X, y, dtype=np.float32, order="C", allow_nd=True, ensure_min_samples=2,
                                 reset=reset, multi_output=self._task == "regression",
                                 y_numeric=self._task == "regression")
        if self._task == "regression":
            if reset:
                self._y_1d = np.ndim(y) == 1
            return X, self._encode(y)
        check_classification_targets(y)
        if reset:
            classes = getattr(self._net, "classes", None)
            self._encoder = LabelEncoder().fit(y if classes is None else classes)
            self.classes_ = self._encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least two.")
            if self._task == "binary" and len(self.classes_) != 2:
                raise ValueError(f"NeuralNetBinaryClassifier needs exactly two classes, y has "
                                 f"{len(self.classes_)}; use NeuralNetClassifier.")
        return X, self._encode(y)

    def _dict_rows(self, X, reset):
        """skorch's dict input, checked: float arrays as float32, integer ones (embedding indices) kept.

        Fitting on a dict records its keys (and forgets ``n_features_in_``); a
        dict given later must have the same keys.
        """
        keys = tuple(X)
        if not keys:
            raise ValueError("X is an empty dict; give one array per input of the module's forward.")
        if not reset and keys != getattr(self, "_input_keys", None):
            fitted = getattr(self, "_input_keys", None)
            raise ValueError(f"X is a dict with keys {list(keys)}, but the search was fitted on "
                             + ("one array" if fitted is None else f"a dict with keys {list(fitted)}") + ".")
        rows = {}
        for key, value in X.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"X's key {key!r} is not a name: skorch passes each key to the module's "
                                 "forward as a keyword argument.")
            array = np.asarray(value.cpu() if torch.is_tensor(value) else value)
            if array.ndim == 0 or array.dtype.kind not in "fiub":
                raise ValueError(f"X[{key!r}] must be a numeric array with one entry per row, got "
                                 f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape}.")
            if array.dtype.kind == "f":
                if not np.isfinite(array).all():
                    raise ValueError(f"X[{key!r}] holds NaN or infinite values; impute or drop them first.")
                array = array.astype(np.float32, copy=False)
            rows[key] = np.ascontiguousarray(array)
        lengths = {key: len(array) for key, array in rows.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"X's arrays must have one entry per row each, got {lengths} rows.")
        if reset:
            self._input_keys = keys
            for name in ("n_features_in_", "feature_names_in_"):  # an array's, from an earlier fit
                self.__dict__.pop(name, None)
        return rows

    def _encode(self, y):
        """Targets as the net takes them: float32 columns for regression, class indices (floats for binary)."""
        y = np.ascontiguousarray(y)
        if self._task == "regression":
            return y.reshape(len(y), -1).astype(np.float32)
        if not np.isin(y, self._encoder.classes_).all():
            raise ValueError("y contains labels the search was not fitted on (or that are not in the "
                             "estimator's `classes`).")
        return self._encoder.transform(y).astype(np.float32 if self._task == "binary" else np.int64)

    def _seed_programs(self):
        """The seed programs, and ``_seed_names``: a name for each (the known losses' own, else the program)."""
        if isinstance(self.seed_programs, str) and self.seed_programs in ("auto", "usual"):
            n_classes = len(self._encoder.classes_) if self._task != "regression" else 1
            known = known_losses(self._task, n_classes)
            if self.seed_programs == "usual":
                known = dict(list(known.items())[:1])
            named = {name: parse(text) for name, text in known.items()}
            self._seed_names = {str(p): name for name, p in named.items()}
            return list(named.values())
        if isinstance(self.seed_programs, str):
            raise ValueError(f"seed_programs must be 'auto', 'usual' or a list of programs, got the string "
                             f"{self.seed_programs!r}; wrap a single program in a list.")
        programs = [parse(p) for p in self.seed_programs]
        for p in programs:
            if not p.is_valid_loss:
                raise ValueError(f"seed program {str(p)!r} must use both y and yhat.")
        self._seed_names = {str(p): p.infix(simplify=True) for p in programs}
        return programs

    def _use_fast_loop(self):
        """True for the fast loop; raises if it was asked for and cannot be used."""
        blockers = fast_path_blockers(self._net)
        if self.train_loop == "fast" and blockers:
            raise ValueError(f"train_loop='fast' cannot train this net: it {'; '.join(blockers)}. "
                             "Use train_loop='auto' or 'skorch'.")
        return self.train_loop == "fast" or (self.train_loop == "auto" and not blockers)

    def _preflight(self, X, y):
        """Fail early, with the net's own message, when the net cannot run a batch at all."""
        criterion_params = sorted(k for k in self._net.get_params(deep=False) if k.startswith("criterion__"))
        if criterion_params:
            raise ValueError(f"the estimator sets {', '.join(criterion_params)}, but LossSearchCV replaces "
                             "the criterion with each candidate loss; remove those settings.")
        net = build_net(self._net, usual_loss(self._task))
        torch.manual_seed(0)
        n = min(n_rows(X), 4)
        try:
            net.initialize()
            with torch.no_grad():
                out = net.infer(to_tensors(take(X, slice(0, n)), net.device))
        except Exception as exc:
            raise self._batch_error(exc) from exc
        self._check_output_width(out, y)
        try:
            with torch.no_grad():
                net.criterion_(out, torch.as_tensor(y[:n], device=net.device))
        except Exception as exc:
            raise self._batch_error(exc) from exc

    @staticmethod
    def _batch_error(exc):
        return ValueError(f"the estimator cannot run one batch of this data with a symbolic loss: "
                          f"{type(exc).__name__}: {exc}")

    def _check_output_width(self, out, y):
        """Refuse a module with one output per class (per target column for regression) too many or too few."""
        if not torch.is_tensor(out) or out.dim() not in (1, 2):
            return  # several outputs, or images: the loss says whether it can take them
        width = 1 if out.dim() == 1 else int(out.shape[1])
        if self._task == "binary":
            expected, why = 1, "NeuralNetBinaryClassifier takes one (the positive class's logit)"
        elif self._task == "multiclass":
            expected = len(self.classes_)
            why = f"y has {expected} classes ({', '.join(map(str, self.classes_[:5]))}{', ...' * (expected > 5)})"
        else:
            expected = int(np.shape(y)[1])
            why = f"y has {expected} target column(s)"
        if width != expected:
            raise ValueError(
                f"the net's module gives {width} output(s) per row, but {why}: give its last layer {expected} "
                f"output(s) (module__n_out={expected} for metaloss_sk.datasets.MLP, or the out_features of the "
                "module's output layer)." + (" For two classes with two outputs, use NeuralNetClassifier."
                                             if self._task == "binary" and width == 2 else ""))

    def _search_settings(self):
        """The parameters that decide the genetic search's course (a checkpoint must match them)."""
        ignored = ("n_jobs", "verbose", "max_time", "checkpoint", "refit", "generations", "n_iter_no_change",
                   "max_evaluations", "max_resources", "n_finalists", "final_seeds", "baseline_lrs")
        if self.screening is None:  # then factor shapes the final selection only
            ignored += ("factor",)
        return {k: v for k, v in self.get_params(deep=False).items() if k not in ignored}

    def _refit(self, X, y):
        """``best_estimator_``: the net (after the Pipeline's steps, if any) trained with ``best_loss_``."""
        net = build_net(self._search_net(self.best_lr_), self.best_loss_, verbose=self._net.verbose,
                        train_split=self._net.train_split)
        steps = self._preprocessing()
        if steps is not None:
            net = Pipeline([*steps.steps, ("to_float32", FunctionTransformer(_float32)),
                            (self.estimator.steps[-1][0], net)])
        if self._task == "regression" and self.standardize_target:
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
        if is_dict(X) or getattr(self, "_input_keys", None) is not None:
            if not is_dict(X):
                raise ValueError(f"the search was fitted on a dict of arrays with keys {list(self._input_keys)}; "
                                 "give X in the same form.")
            return self._dict_rows(X, reset=False)
        if self._preprocessing() is not None:  # best_estimator_ is the Pipeline: its steps take the raw rows
            validate_data(self, X, skip_check_array=True, reset=False)
            return X
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
        return float(self._scorer(self.best_estimator_, X, self._encode(np.asarray(y))))

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
