"""The losses a practitioner tries first, written as programs: the search starts from them.

A user who does not run a search tunes the learning rate and tries a few
well-known losses. :func:`known_losses` writes those losses in the search's
own language, so they seed the first generation, climb the final selection
beside the usual loss, and are what a found loss must beat to be returned
(``LossSearchCV(seed_programs="auto")``).

Each program is applied element-wise to ``y`` (one-hot targets; ``[1 - t, t]``
for a binary net) and ``yhat`` (softmax; ``[1 - p, p]``), summed over the
classes and averaged over the batch, so every one is the textbook loss exactly:

- label smoothing (epsilon 0.1): ``-((1 - epsilon) y + epsilon / K) log yhat``;
- focal loss (gamma 2): ``-(1 - yhat)^2 y log yhat``;
- PolyLoss Poly-1: cross-entropy plus ``y (1 - yhat)``, which sums to ``1 - p_t``;
- the Brier score: ``(y - yhat)^2``;
- for regression (raw outputs, standardised targets) absolute error and the
  pseudo-Huber loss with delta 1, ``sqrt(1 + (y - yhat)^2) - 1``.

Label smoothing holds the constants ``1 - epsilon`` and ``epsilon / K`` and
the pseudo-Huber loss the constant 1 inside a square root: seeds may hold
constants the genetic search itself never creates.
"""

from .loss import CROSS_ENTROPY, SQUARED_ERROR
from .program import parse

__all__ = ["known_losses", "seed_programs"]

#: Label smoothing's epsilon and the focal loss's gamma, the values papers and libraries default to.
SMOOTHING = 0.1
FOCAL = "neg(mul(mul(y, square(sub(1, yhat))), log(yhat)))"
POLY1 = f"add({CROSS_ENTROPY}, mul(y, sub(1, yhat)))"
BRIER = "square(sub(y, yhat))"
ABSOLUTE_ERROR = "abs(sub(y, yhat))"
PSEUDO_HUBER = "sub(sqrt(add(1, square(sub(y, yhat)))), 1)"


def known_losses(task, n_classes=2):
    """The usual loss and the well-known losses for ``task``, as ``{name: program}``.

    Parameters
    ----------
    task : {"multiclass", "binary", "regression"}
    n_classes : int, default=2
        Classes of a multiclass task (label smoothing spreads ``epsilon`` over
        them); a binary net has two.

    Returns
    -------
    dict of str to str
        Names to programs in gplearn's prefix syntax, the usual loss first.
    """
    if task == "regression":
        return {"squared error": SQUARED_ERROR, "absolute error": ABSOLUTE_ERROR, "pseudo-Huber": PSEUDO_HUBER}
    k = 2 if task == "binary" else int(n_classes)
    if k < 2:
        raise ValueError(f"n_classes must be at least 2 for a classifier, got {n_classes!r}.")
    smoothing = f"neg(mul(add(mul({1 - SMOOTHING:.12g}, y), {SMOOTHING / k:.12g}), log(yhat)))"
    return {"cross-entropy": CROSS_ENTROPY, f"label smoothing {SMOOTHING:g}": smoothing, "focal 2": FOCAL,
            "poly-1": POLY1, "Brier": BRIER}


def seed_programs(seeds, task, n_classes=2):
    """The programs of ``LossSearchCV(seed_programs=seeds)`` and a name for each, as ``{program: name}``.

    ``"auto"`` is every known loss (:func:`known_losses`), ``"usual"`` the
    usual loss alone; a sequence of programs is named by each one's simplified
    infix. A program that does not use both ``y`` and ``yhat`` is refused.
    """
    if isinstance(seeds, str):  # "auto" or "usual"
        known = list(known_losses(task, n_classes).items())
        return {parse(text): name for name, text in (known[:1] if seeds == "usual" else known)}
    programs = [parse(p) for p in seeds]
    for p in programs:
        if not p.is_valid_loss:
            raise ValueError(f"seed program {str(p)!r} must use both y and yhat.")
    return {p: p.infix(simplify=True) for p in programs}
