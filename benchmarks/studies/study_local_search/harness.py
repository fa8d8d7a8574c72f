"""Self-contained harness for the local-search study (reads a frozen copy of metaloss_sk in ./src)."""
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from metaloss_sk.loss import SymbolicLoss  # noqa: E402
from metaloss_sk.nets import MLP  # noqa: E402
from metaloss_sk.primitives import Primitive  # noqa: E402

torch.set_num_threads(1)

OPT = dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
BATCH = 128
BUDGET = 500

PROGRAMS = {
    "digits": [
        "neg(mul(y, log(yhat)))",
        "square(sub(y, yhat))",
        "neg(mul(y, log(add(yhat, 1.0))))",
        "mul(square(sub(y, yhat)), tanh(square(sub(y, yhat))))",
        "square(square(sqrt(sub(sub(y, yhat), yhat))))",
    ],
    "diabetes": [
        "square(sub(y, yhat))",
        "abs(sub(y, yhat))",
        "square(div(sub(y, yhat), y))",
        "tanh(square(sub(y, yhat)))",
    ],
}


# ----------------------------------------------------------------------------- data
def load(name):
    """Returns dict with task, n_in, n_out, folds = [(Xtr, ytr, Xva, yva)] as tensors."""
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = (X / 16).astype(np.float32)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
        cv = StratifiedKFold(3, shuffle=True, random_state=0).split(Xtr, ytr)
        task, n_in, n_out, ydt = "multiclass", 64, 10, np.int64
    else:
        X, y = load_diabetes(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
        mu, sd = Xtr.mean(0), Xtr.std(0)
        Xtr = ((Xtr - mu) / sd).astype(np.float32)
        ym, ys = ytr.mean(), ytr.std()
        ytr = ((ytr - ym) / ys).astype(np.float32)
        cv = KFold(3, shuffle=True, random_state=0).split(Xtr)
        task, n_in, n_out, ydt = "regression", 10, 1, np.float32
    folds = [tuple(torch.as_tensor(a) for a in (Xtr[tr], ytr[tr].astype(ydt), Xtr[va], ytr[va].astype(ydt)))
             for tr, va in cv]
    return dict(name=name, task=task, n_in=n_in, n_out=n_out, folds=folds)


def make_net(ds, seed):
    torch.manual_seed(seed)
    return MLP(ds["n_in"], 128, ds["n_out"])


def make_loss(program, ds):
    return SymbolicLoss(program, task=ds["task"])


def task_loss(out, target, task):
    if task == "regression":
        return F.mse_loss(out.reshape(-1), target.reshape(-1))
    return F.cross_entropy(out, target)


def score(out, target, task):
    if task == "regression":
        out, target = out.reshape(-1), target.reshape(-1)
        return float(1 - ((out - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())
    return float((out.argmax(1) == target).float().mean())


def loss_value(loss, cs, out, target):
    y, yhat = loss.terminals(out, target)
    return loss.reduce(loss.program_.evaluate(y, yhat, cs), y)


# ----------------------------------------------------------------------------- fitness
def fit_score(ds, program, cs, Xtr, ytr, Xva, yva, seed, steps=BUDGET, return_net=False):
    """Train a fresh net (seed) for `steps` SGD steps with the loss; score on (Xva, yva)."""
    loss = make_loss(program, ds)
    ct = None if cs is None else [torch.tensor(float(c)) for c in cs]
    net = make_net(ds, seed)
    opt = torch.optim.SGD(net.parameters(), **OPT)
    g = torch.Generator().manual_seed(seed)
    n = len(Xtr)
    b = min(BATCH, n)
    perm, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + b > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + b]
        pos += b
        out = net(Xtr[idx])
        lv = loss_value(loss, ct, out, ytr[idx])
        opt.zero_grad()
        lv.backward()
        opt.step()
    with torch.no_grad():
        out = net(Xva)
        s = score(out, yva, ds["task"])
    if not math.isfinite(s):
        s = -1.0 if ds["task"] == "regression" else 0.0
    return (s, net) if return_net else s


def cv_score(ds, program, cs_per_fold=None, seed_base=1000, steps=BUDGET):
    scores = []
    for k, (Xtr, ytr, Xva, yva) in enumerate(ds["folds"]):
        cs = None if cs_per_fold is None else cs_per_fold[k]
        scores.append(fit_score(ds, program, cs, Xtr, ytr, Xva, yva, seed_base + k, steps))
    return float(np.mean(scores)), scores


# ----------------------------------------------------------------------------- program structure
def _subtree_sizes(nodes):
    sizes = [0] * len(nodes)
    stack = []
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i]
        if isinstance(n, Primitive):
            s = 1 + sum(stack.pop() for _ in range(n.arity))
        else:
            s = 1
        sizes[i] = s
        stack.append(s)
    return sizes


def root_children(program):
    nodes = program.nodes
    root = nodes[0]
    if not isinstance(root, Primitive):
        return []
    sizes = _subtree_sizes(nodes)
    kids, i = [], 1
    for _ in range(root.arity):
        kids.append(i)
        i += sizes[i]
    return kids


# degree of positive homogeneity of the root in each child (None: not foldable)
_FOLD = {"add": "all1", "sub": "all1", "min": "all1", "max": "all1", "neg": "all1", "abs": "all1",
         "mul": "first1", "div": "first1", "square": "half", "sqrt": "two"}


def fold_scale(program, cs, r):
    """Coefficients whose loss equals r * loss(cs), or None where the root cannot absorb a factor."""
    root = program.nodes[0]
    kind = _FOLD.get(getattr(root, "name", None))
    if kind is None or r <= 0:
        return None
    cs = np.array(cs, dtype=float)
    kids = root_children(program)
    if kind == "all1":
        for k in kids:
            cs[k - 1] *= r
    elif kind == "first1":
        cs[kids[0] - 1] *= r
    elif kind == "half":
        cs[kids[0] - 1] *= math.sqrt(r)
    elif kind == "two":
        cs[kids[0] - 1] *= r * r
    return cs


def scale_direction(program, cs):
    """d cs / d log(scale) for a global factor on the loss (None if the root is not foldable)."""
    a = fold_scale(program, cs, math.e ** 1e-4)
    if a is None:
        return None
    return (a - np.asarray(cs, float)) / 1e-4
