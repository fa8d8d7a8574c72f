"""SymbolicLoss: a loss program as an ordinary skorch criterion."""

import numpy as np
import sympy
import torch
from torch import nn

from ._validation import check_coefficients
from .primitives import learn_primitives, user_primitives
from .program import Program, parse
from .terminals import binary_terminals, multiclass_terminals, reduce_loss, regression_terminals

__all__ = ["SymbolicLoss", "TASKS", "LINKS"]

TASKS = ("multiclass", "binary", "regression")
#: Links each task accepts; the first is the default.
LINKS = {
    "multiclass": ("softmax", "probabilities"),
    "binary": ("sigmoid", "probabilities"),
    "regression": ("identity",),
}
CROSS_ENTROPY = "neg(mul(y, log(yhat)))"
SQUARED_ERROR = "square(sub(y, yhat))"


def _check_task_link(task, link):
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not supported; use one of {TASKS}.")
    if link == "auto":
        return LINKS[task][0]
    if link not in LINKS[task]:
        raise ValueError(f"link={link!r} does not fit task={task!r}; use one of {('auto',) + LINKS[task]}.")
    return link


def _class_for(task, link):
    link = _check_task_link(task, link)
    return {
        ("multiclass", "softmax"): _SoftmaxSymbolicLoss,
        ("binary", "sigmoid"): _SigmoidSymbolicLoss,
        ("binary", "probabilities"): _BinaryProbabilitySymbolicLoss,
    }.get((task, link), SymbolicLoss)


class SymbolicLoss(nn.Module):
    """A loss function given by a symbolic program, usable as a skorch criterion.

    The program is applied element-wise to the target ``y`` and the prediction
    ``yhat``, summed over classes and averaged over the batch (EvoMAL's
    convention). For classification ``yhat`` is a probability: the softmax of
    the logits (multiclass, one-hot ``y``) or, for a single-output binary net,
    the sigmoid expanded to the two classes ``[1 - p, p]``, so that the
    cross-entropy program below equals binary cross-entropy. For regression
    ``yhat`` is the raw output and the program's value is averaged over all
    elements.

    Parameters
    ----------
    program : str, default="neg(mul(y, log(yhat)))"
        The loss in gplearn's prefix syntax; parsed by a restricted grammar,
        never evaluated as Python. The default is cross-entropy.
    task : {"multiclass", "binary", "regression"}, default="multiclass"
        What the net predicts.
    link : {"auto", "softmax", "sigmoid", "identity", "probabilities"}, default="auto"
        How raw outputs become ``yhat``; ``"auto"`` picks softmax, sigmoid or
        identity by task, ``"probabilities"`` is for modules that already
        output probabilities.
    coefficients : sequence of float, optional
        One coefficient per edge of the program tree (per node but the root, in
        prefix order), scaling that node's value on its way to its parent.
        Stored as a buffer, so a net's optimizer never trains it.

    Notes
    -----
    With the softmax or sigmoid link the loss is also an instance of
    :class:`torch.nn.CrossEntropyLoss` or :class:`torch.nn.BCEWithLogitsLoss`,
    which is how skorch knows to turn ``predict_proba``'s outputs into
    probabilities; only this class's ``forward`` is ever used.

    Examples
    --------
    >>> import torch
    >>> from metaloss_sk import SymbolicLoss
    >>> loss = SymbolicLoss("neg(mul(y, log(yhat)))")
    >>> logits, target = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    >>> round(loss(logits, target).item(), 4)
    1.0986
    >>> print(loss)
    -(y * log(yhat))
    """

    def __new__(cls, program=CROSS_ENTROPY, task="multiclass", link="auto", coefficients=None):
        target = _class_for(task, link)
        obj = super().__new__(target)
        if not issubclass(target, cls):
            # Python calls __init__ only for instances of cls; do it here.
            obj.__init__(program, task, link, coefficients)
        return obj

    def __init__(self, program=CROSS_ENTROPY, task="multiclass", link="auto", coefficients=None):
        super().__init__()
        self.program = program
        self.task = task
        self.link = link
        self.program_ = parse(program)
        self.link_ = _check_task_link(task, link)
        if coefficients is None:
            self.register_buffer("coefficients", None)
        else:
            c = check_coefficients(coefficients, self.program_)
            self.register_buffer("coefficients", torch.as_tensor(c.astype(np.float32)))

    def __reduce_ex__(self, protocol):
        # Rebuild through the constructor: robust across versions and classes.
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("program_", "_buffers", "_parameters", "_modules", "_evaluator_cache")}
        return (_rebuild, (self.get_params(), user_primitives(self.program_.nodes)), state)

    def __setstate__(self, state):
        self.__dict__.update(state)

    def get_params(self, deep=True):
        """Constructor arguments, coefficients as a list of floats.

        ``deep`` is accepted for scikit-learn's protocol and ignored.
        """
        return {
            "program": self.program, "task": self.task, "link": self.link,
            "coefficients": None if self.coefficients is None
            else [float(c) for c in self.coefficients.detach().cpu()],
        }

    def __sklearn_clone__(self):
        # sklearn.clone (e.g. of a net holding this loss) would rebuild from
        # get_params and insist on getting the same coefficients object back.
        return _rebuild(self.get_params())

    def as_params(self, prefix="criterion"):
        """This loss as skorch parameters: the class plus ``criterion__*`` settings.

        skorch refuses ``set_params(criterion=<module instance>)`` on a net that
        is not initialised (which is every net ``GridSearchCV`` clones), so
        ``net.set_params(**loss.as_params())`` is the way to put a loss into a
        net that already exists, and ``{k: [v] for k, v in loss.as_params().items()}``
        is a ``GridSearchCV`` grid entry.
        """
        params = {prefix: SymbolicLoss}
        params.update({f"{prefix}__{k}": v for k, v in self.get_params().items()})
        return params

    def with_coefficients(self, coefficients):
        """A copy of this loss with other coefficients (None removes them)."""
        return SymbolicLoss(**{**self.get_params(), "coefficients": coefficients})

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if not (k == "coefficients" and v is None))
        return f"SymbolicLoss({args})"

    def __str__(self):
        return self.infix()

    def infix(self, precision=4):
        """Readable infix expression, with coefficients where present (simplified where there are none).

        A classifier's loss is simplified under what its terminals guarantee
        (class-index targets make ``y`` 0 or 1; ``yhat`` is a probability):
        ``y^2`` prints as ``y``, ``max(yhat, -1)`` as ``yhat``, ``sign(yhat)``
        as 1. The program that trains is unchanged.
        """
        return self.program_.infix(self._coefficient_list(), precision=precision, simplify=True,
                                   probabilities=self.task != "regression")

    def per_class(self, precision=4):
        """A classifier's loss per class, readable: ``"p -> ...; q -> ..."``.

        With class-index targets the loss of a row is the first expression
        at ``p``, the predicted probability of the true class, plus the
        second at ``q``, the probability of each other class (see
        :meth:`Program.per_class`).

        >>> print(SymbolicLoss("neg(mul(mul(y, square(sub(1, yhat))), log(yhat)))").per_class())
        true class: -((1 - p)^2 * log(p));  each other class: 0

        Raises
        ------
        ValueError
            For a regression loss, which has no classes.
        """
        if self.task == "regression":
            raise ValueError("per_class() describes a classifier's loss; this loss has task='regression'.")
        true, other = self.program_.per_class()
        if self.coefficients is not None:  # the tree keeps its shape, so each edge keeps its coefficient
            true, other = (Program(n if not (isinstance(n, int) and not isinstance(n, bool) and n == 0) else v
                                   for n in self.program_.nodes) for v in (1.0, 0.0))
        forms = [p.infix(self._coefficient_list(), precision=precision, simplify=True, probabilities=True,
                         terminals=("y", name)) for p, name in ((true, "p"), (other, "q"))]
        return f"true class: {forms[0]};  each other class: {forms[1]}"

    def sympy(self):
        """The loss as a sympy expression in ``y`` and ``yhat``."""
        return self.program_.sympy(self._coefficient_list(), positive_yhat=self.task != "regression")

    def latex(self):
        """The loss in LaTeX."""
        return sympy.latex(self.sympy())

    def _coefficient_list(self):
        return None if self.coefficients is None else self.get_params()["coefficients"]

    def forward(self, y_pred, y_true, sample_weight=None):
        """Loss of raw outputs ``y_pred`` against targets ``y_true``.

        ``sample_weight`` (optional, one per row) scales each row's loss
        before the mean over the batch: ``(sample_weight * row_loss).mean()``.
        skorch never passes it; a net that weights rows passes it from its
        ``get_loss`` (see the user guide's "Weighted rows", docs/user_guide/data.md).
        """
        return self.from_terminals(*self.terminals(y_pred, y_true), sample_weight=sample_weight)

    def from_terminals(self, y, yhat, sample_weight=None):
        """The loss given the program's terminals (see :meth:`terminals`)."""
        return self.reduce(self._evaluator()(y, yhat), y, sample_weight)

    def _evaluator(self):
        # The program's evaluator for the current coefficients, rebuilt when the
        # buffer is replaced (``.to``) or changed in place (``load_state_dict``);
        # holding the tensor keeps its id from being reused.
        cs = self.coefficients
        key = self.program_, None if cs is None else (cs._version, cs.requires_grad)
        cached = self.__dict__.get("_evaluator_cache")
        if cached is None or cached[0] is not cs or cached[1] != key:
            cached = (cs, key, self.program_.evaluator(cs))
            self.__dict__["_evaluator_cache"] = cached
        return cached[2]

    def reduce(self, elementwise, y, sample_weight=None):
        """Sum over classes and mean over the batch (mean over all for regression), rows weighted if given."""
        return reduce_loss(elementwise, y, self.task == "regression", sample_weight)

    def terminals(self, y_pred, y_true):
        """The program's terminals ``(y, yhat)`` for a batch, as float tensors."""
        if not torch.is_tensor(y_pred) or not torch.is_floating_point(y_pred):
            raise TypeError(
                f"SymbolicLoss expects the prediction as a floating-point tensor, got "
                f"{getattr(y_pred, 'dtype', type(y_pred).__name__)}."
            )
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        if self.task == "multiclass":
            return multiclass_terminals(y_pred, y_true, self.link_ == "softmax")
        if self.task == "binary":
            return binary_terminals(y_pred, y_true, self.link_ == "sigmoid")
        return regression_terminals(y_pred, y_true)


def usual_loss(task):
    """The task's usual loss as a program: cross-entropy for classifiers, squared error for regression."""
    return SymbolicLoss(SQUARED_ERROR if task == "regression" else CROSS_ENTROPY, task=task)


def _rebuild(params, primitives=()):
    learn_primitives(primitives)
    return SymbolicLoss(**params)


class _SoftmaxSymbolicLoss(SymbolicLoss, nn.CrossEntropyLoss):
    pass


class _SigmoidSymbolicLoss(SymbolicLoss, nn.BCEWithLogitsLoss):
    pass


class _BinaryProbabilitySymbolicLoss(SymbolicLoss, nn.BCELoss):
    pass
