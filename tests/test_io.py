"""Safe JSON persistence: round trips, atomic writes, hostile inputs, fuzzing."""

import json
import math
import os
import stat
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaloss_sk import SymbolicLoss, parse
from metaloss_sk.io import (
    MAX_DOCUMENT_SIZE,
    dumps_hall_of_fame,
    dumps_loss,
    hall_of_fame_from_dict,
    hall_of_fame_to_dict,
    load_hall_of_fame,
    load_loss,
    loads_hall_of_fame,
    loads_loss,
    loss_from_dict,
    loss_to_dict,
    save_hall_of_fame,
    save_loss,
)
from metaloss_sk.primitives import PRIMITIVES

CE = "neg(mul(y, log(yhat)))"
MSE = "square(sub(y, yhat))"
FOCALISH = "neg(mul(mul(y, square(sub(1.0, yhat))), log(yhat)))"


def _doc(**changes):
    d = {"format": "metaloss_sk.loss", "version": 1, "program": CE, "task": "multiclass",
         "link": "auto", "coefficients": None}
    d.update(changes)
    return d


def _entry(program=CE, **changes):
    p = parse(program)
    e = {"program": program, "infix": p.infix(), "length": p.length, "depth": p.depth,
         "generation": 0, "mean_test_score": 0.5, "std_test_score": 0.1}
    e.update(changes)
    return e


def _hof_doc(entries=None, **changes):
    d = {"format": "metaloss_sk.hall_of_fame", "version": 1, "task": "multiclass",
         "entries": [_entry()] if entries is None else entries}
    d.update(changes)
    return d


def _batch(task, seed=0):
    g = torch.Generator().manual_seed(seed)
    if task == "multiclass":
        return torch.randn(16, 4, generator=g), torch.randint(0, 4, (16,), generator=g)
    if task == "binary":
        return torch.randn(16, generator=g), torch.randint(0, 2, (16,), generator=g).float()
    return torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)


def _coefficients(program, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, size=len(parse(program)) - 1).tolist()


# --------------------------------------------------------------------------- round trips


CASES = [
    (CE, "multiclass", "auto"),
    (CE, "multiclass", "softmax"),
    (FOCALISH, "multiclass", "auto"),
    (CE, "binary", "auto"),
    (CE, "binary", "sigmoid"),
    (MSE, "regression", "auto"),
    (MSE, "regression", "identity"),
    ("add(abs(sub(y, yhat)), mul(-0.25, square(sub(y, yhat))))", "regression", "auto"),
]


@pytest.mark.parametrize("with_coefficients", [False, True])
@pytest.mark.parametrize("program, task, link", CASES)
def test_round_trip(program, task, link, with_coefficients):
    coefficients = _coefficients(program) if with_coefficients else None
    loss = SymbolicLoss(program, task=task, link=link, coefficients=coefficients)
    text = dumps_loss(loss)
    d = json.loads(text)
    assert d["format"] == "metaloss_sk.loss" and d["version"] == 1
    assert (d["coefficients"] is None) == (not with_coefficients)
    back = loads_loss(text)
    assert type(back) is type(loss)
    assert back.get_params() == loss.get_params()
    assert loss_from_dict(loss_to_dict(loss)).get_params() == loss.get_params()
    assert loads_loss(text.encode("utf-8")).get_params() == loss.get_params()
    y_pred, y_true = _batch(task)
    assert torch.equal(back(y_pred, y_true), loss(y_pred, y_true))


def test_round_trip_program_object_and_odd_spacing():
    loss = SymbolicLoss(parse(MSE), task="regression")
    assert loss_to_dict(loss)["program"] == MSE
    loss = SymbolicLoss("neg( mul(y,log( yhat )) )")
    assert loads_loss(dumps_loss(loss)).get_params() == loss.get_params()


def test_coefficients_are_exact():
    loss = SymbolicLoss(FOCALISH, coefficients=[1 / 3, 1e-30, -7.1, 3e38, 0.1, 1, 2, 3, 4])
    back = loads_loss(dumps_loss(loss))
    assert torch.equal(back.coefficients, loss.coefficients)


def test_optional_fields_default():
    d = _doc()
    del d["link"], d["coefficients"]
    loss = loss_from_dict(d)
    assert loss.link == "auto" and loss.coefficients is None


def test_save_and_load_loss(tmp_path):
    path = tmp_path / "loss.json"
    loss = SymbolicLoss(MSE, task="regression", coefficients=_coefficients(MSE))
    save_loss(loss, path)
    assert load_loss(path).get_params() == loss.get_params()
    assert load_loss(str(path)).get_params() == loss.get_params()
    assert os.listdir(tmp_path) == ["loss.json"]
    text = path.read_text()
    assert text.endswith("\n") and text.isascii()


def test_loss_to_dict_rejects_non_loss():
    with pytest.raises(TypeError):
        loss_to_dict(torch.nn.MSELoss())


def _search_like_hall_of_fame():
    # Built as LossSearchCV builds it: rows of numpy arrays indexed by scalars.
    programs = [CE, MSE, FOCALISH]
    parsed = [parse(p) for p in programs]
    cv = {
        "program": np.array(programs), "infix": np.array([p.infix() for p in parsed]),
        "length": np.array([p.length for p in parsed]), "depth": np.array([p.depth for p in parsed]),
        "generation": np.array([0, 3, 7]), "mean_test_score": np.array([0.91, 0.85, 0.8]),
        "std_test_score": np.array([0.01, np.nan, 0.0]),
    }
    return [{k: v[i] for k, v in cv.items()} for i in range(len(programs))]


def test_hall_of_fame_round_trip(tmp_path):
    entries = _search_like_hall_of_fame()
    assert isinstance(entries[0]["length"], np.integer)
    path = tmp_path / "hof.json"
    save_hall_of_fame(entries, path, task="multiclass")
    assert os.listdir(tmp_path) == ["hof.json"]
    raw = json.loads(path.read_text())
    assert raw["task"] == "multiclass" and raw["entries"][1]["std_test_score"] is None
    back, task = load_hall_of_fame(path, return_task=True)
    assert task == "multiclass"
    assert len(back) == 3
    for got, want in zip(back, entries):
        assert set(got) == set(want)
        for key in ("program", "infix", "length", "depth", "generation"):
            assert got[key] == want[key] and type(got[key]) in (str, int)
        for key in ("mean_test_score", "std_test_score"):
            assert type(got[key]) is float
            assert got[key] == want[key] or (math.isnan(got[key]) and np.isnan(want[key]))
        assert parse(got["program"]) == parse(want["program"])
    assert [e["program"] for e in load_hall_of_fame(path)] == [CE, MSE, FOCALISH]


def test_hall_of_fame_with_coefficients_and_no_task():
    entries = [_entry(MSE, coefficients=np.array(_coefficients(MSE), dtype=np.float32)),
               _entry(CE, coefficients=torch.ones(4)), _entry(CE, coefficients=None)]
    text = dumps_hall_of_fame(entries)
    back, task = loads_hall_of_fame(text, return_task=True)
    assert task is None
    assert back[0]["coefficients"] == [float(c) for c in np.asarray(_coefficients(MSE), dtype=np.float32)]
    assert back[1]["coefficients"] == [1.0] * 4 and back[2]["coefficients"] is None
    loss = SymbolicLoss(back[0]["program"], task="regression", coefficients=back[0]["coefficients"])
    assert len(loss.coefficients) == 3
    assert hall_of_fame_from_dict(hall_of_fame_to_dict(entries))[0] == back


def test_empty_hall_of_fame():
    assert loads_hall_of_fame(dumps_hall_of_fame([])) == []


@pytest.mark.parametrize("entries, match", [
    ([_entry(mean_test_score=np.inf)], "mean_test_score"),
    ([_entry(length=99)], "length"),
    ([_entry(extra=1)], "unknown"),
    ([{"program": CE}], "missing"),
    (["not a dict"], r"entries\[0\]"),
    ("a string", "list"),
    (5, "list"),
])
def test_save_hall_of_fame_rejects_bad_entries(tmp_path, entries, match):
    with pytest.raises(ValueError, match=match):
        save_hall_of_fame(entries, tmp_path / "hof.json")
    assert os.listdir(tmp_path) == []


def test_save_hall_of_fame_rejects_bad_task(tmp_path):
    with pytest.raises(ValueError, match="task"):
        save_hall_of_fame([_entry()], tmp_path / "hof.json", task="classification")


# --------------------------------------------------------------------------- atomic writes


def test_atomic_overwrite_and_no_temp_files(tmp_path):
    path = tmp_path / "loss.json"
    for program in (CE, FOCALISH, CE):
        save_loss(SymbolicLoss(program), path)
        assert os.listdir(tmp_path) == ["loss.json"]
        assert load_loss(path).program == program


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "loss.json"
    save_loss(SymbolicLoss(CE), path)
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        save_loss(SymbolicLoss(FOCALISH), path)
    assert os.listdir(tmp_path) == ["loss.json"]
    assert path.read_bytes() == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_file_mode_follows_umask_and_existing_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new.json"
        save_loss(SymbolicLoss(CE), path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        os.chmod(path, 0o600)
        save_loss(SymbolicLoss(CE), path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- hostile inputs


def _j(**changes):
    return json.dumps(_doc(**changes))


def _raw(fields):
    """A loss document from raw JSON snippets, for tokens json.dumps cannot write."""
    d = {"format": '"metaloss_sk.loss"', "version": "1", "program": json.dumps(CE), "task": '"multiclass"'}
    d.update(fields)
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}"


DEEP = 100_000
HOSTILE_LOSSES = [
    # not JSON, or not an object
    "", " ", "{", "nul", "[1, 2", "{'format': 'metaloss_sk.loss'}", "[]", "null", '"metaloss_sk.loss"', "1e999",
    "NaN", "Infinity", "-Infinity",
    # format and version
    json.dumps({k: v for k, v in _doc().items() if k != "format"}),
    _j(format="metaloss_sk.hall_of_fame"), _j(format=None), _j(format=["metaloss_sk.loss"]),
    _j(format="x" * 10_000),
    _j(version=2), _j(version=0), _j(version="1"), _j(version=1.0), _j(version=True), _j(version=None),
    _raw({"version": "1" + "0" * 5000}),
    json.dumps({k: v for k, v in _doc().items() if k != "version"}),
    # programs the grammar must refuse, code included
    _j(program="__import__('os').system('x')"), _j(program="eval(y)"), _j(program="exec(y)"),
    _j(program="os.system(y)"), _j(program="y; import os"), _j(program="lambda: 0"), _j(program="y.__class__"),
    _j(program="getattr(y, yhat)"), _j(program="add(y)"), _j(program="add(y, yhat, y)"), _j(program="neg(y"),
    _j(program="neg(y))"), _j(program=""), _j(program="   "), _j(program="1e999"), _j(program="add(y, nan)"),
    _j(program="add(y, inf)"), _j(program="y yhat"), _j(program="\x00"), _j(program="\ud800"),
    _j(program="neg(" * 100_000 + "y" + ")" * 100_000), _j(program="a" * 2_000_000), _j(program="add(" * 20_000),
    _j(program=None), _j(program=5), _j(program=["neg", "y"]), _j(program={"op": "neg"}),
    json.dumps({k: v for k, v in _doc().items() if k != "program"}),
    # task and link
    _j(task="classification"), _j(task=None), _j(task=1), _j(task=["multiclass"]), _j(task="MULTICLASS"),
    json.dumps({k: v for k, v in _doc().items() if k != "task"}),
    _j(link="sigmoid"), _j(link="identity"), _j(task="regression", program=MSE, link="softmax"), _j(link=None),
    _j(link=3),
    # coefficients
    _j(coefficients=[1.0]), _j(coefficients=[1.0] * 5), _j(coefficients=[]), _j(coefficients=["1"] * 4),
    _j(coefficients=[True] * 4), _j(coefficients=[None] * 4), _j(coefficients=[[1.0]] * 4),
    _j(coefficients={"0": 1.0}), _j(coefficients="1,1,1,1"), _j(coefficients=1.0), _j(coefficients=[1e39] * 4),
    _j(coefficients=[10**400] * 4), _j(coefficients=[-(10**400)] * 4),
    _raw({"coefficients": "[NaN, 1, 1, 1]"}), _raw({"coefficients": "[Infinity, 1, 1, 1]"}),
    _raw({"coefficients": "[-Infinity, 1, 1, 1]"}), _raw({"coefficients": "[1e999, 1, 1, 1]"}),
    _raw({"coefficients": "[" + "1" * 5000 + ", 1, 1, 1]"}),
    # keys
    _j(extra=1), _j(__class__="os.system"),
    '{"format": "metaloss_sk.loss", "version": 1, "program": "y", "program": "yhat", "task": "binary"}',
    '{"format": "metaloss_sk.loss", "format": "metaloss_sk.loss", "version": 1, "program": "y", "task": "binary"}',
    # deep nesting and size
    "[" * DEEP + "]" * DEEP, "[" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP, _raw({"coefficients": "[" * DEEP}),
    _raw({"coefficients": "[" * DEEP + "]" * DEEP}), _raw({"extra": '{"a":' * DEEP + "null" + "}" * DEEP}),
    " " * (MAX_DOCUMENT_SIZE + 1), _j(program="y" * (MAX_DOCUMENT_SIZE + 1)),
    # bytes that are not UTF-8, and other bad byte strings
    b"\xff\xfe{}", b'{"format": "\xc3\x28"}', _j().encode("utf-16"), b"\x80" * 100, bytearray(b"\xff"),
]


@pytest.mark.parametrize("text", HOSTILE_LOSSES, ids=range(len(HOSTILE_LOSSES)))
def test_hostile_loss_raises_value_error(text):
    with pytest.raises(ValueError) as info:
        loads_loss(text)
    assert len(str(info.value)) < 1000  # messages name the problem without echoing huge inputs


@pytest.mark.parametrize("value", [None, 5, 1.5, ["{}"], {"format": "metaloss_sk.loss"}, object()])
def test_loads_rejects_non_text(value):
    with pytest.raises(ValueError, match="str or bytes"):
        loads_loss(value)
    with pytest.raises(ValueError, match="str or bytes"):
        loads_hall_of_fame(value)


@pytest.mark.parametrize("d", [None, [], "x", 1, _doc(program=[[[]]]), _doc(coefficients=np.ones(4)),
                               _doc(task=np.array(["multiclass"])), {1: 2, **_doc()},
                               _doc(coefficients=(1.0, 2.0)), _doc(version=np.int64(2))])
def test_loss_from_dict_rejects_python_objects(d):
    with pytest.raises(ValueError):
        loss_from_dict(d)


def test_loss_from_dict_never_reprs_deep_structures():
    deep = []
    for _ in range(DEEP):
        deep = [deep]
    for d in (_doc(program=deep), _doc(coefficients=deep), _doc(extra=deep), _doc(format=deep)):
        with pytest.raises(ValueError):
            loss_from_dict(d)


def test_error_messages_name_the_field():
    cases = {
        _j(task="classification"): "task", _j(link="sigmoid"): "link", _j(coefficients=[1.0]): "coefficients",
        _j(coefficients=[1e39] * 4): r"coefficients\[0\]", _j(program="eval(y)"): "program",
        _j(version=2): "version", _j(format="other"): "format", _j(extra=1): "unknown key",
        json.dumps({k: v for k, v in _doc().items() if k != "task"}): "missing", "[" * DEEP: "nested",
        b"\xff": "UTF-8", _raw({"coefficients": "[NaN, 1, 1, 1]"}): "NaN",
    }
    for text, match in cases.items():
        with pytest.raises(ValueError, match=match):
            loads_loss(text)


def _hj(**changes):
    return json.dumps(_hof_doc(**changes))


def _ej(**changes):
    return json.dumps(_hof_doc(entries=[{**_entry(), **changes}]))


HOSTILE_HALLS = [
    "", "[]", "{}", _j(), _hj(format="metaloss_sk.loss"), _hj(version=2), _hj(task="classification"), _hj(task=3),
    json.dumps({**_hof_doc(), "entries": None}), _hj(entries={"0": _entry()}), _hj(entries=[None]),
    _hj(entries=[[_entry()]]),
    _hj(entries=[1]), _hj(extra=[]), json.dumps({k: v for k, v in _hof_doc().items() if k != "entries"}),
    _ej(program="__import__('os').system('x')"), _ej(program=None), _ej(infix=None), _ej(infix=1),
    _ej(length=4), _ej(length=True), _ej(length="5"), _ej(length=5.0), _ej(depth=2), _ej(depth=-1),
    _ej(generation=-1), _ej(generation=True), _ej(generation=1.5), _ej(generation=10**30),
    _ej(mean_test_score="0.5"), _ej(mean_test_score=True), _ej(mean_test_score=[0.5]),
    _ej(mean_test_score=10**400), _ej(std_test_score={}), _ej(coefficients=[1.0]), _ej(coefficients=["a"] * 4),
    _ej(coefficients=[1e300] * 4), _ej(extra=None),
    json.dumps(_hof_doc(entries=[{k: v for k, v in _entry().items() if k != "depth"}])),
    _hj().replace('"mean_test_score": 0.5', '"mean_test_score": NaN'),
    _hj().replace('"mean_test_score": 0.5', '"mean_test_score": Infinity'),
    _hj().replace('"mean_test_score": 0.5', '"mean_test_score": 1e999'),
    _hj().replace('"generation": 0', '"generation": ' + "9" * 5000),
    '{"entries": ' + "[" * DEEP + "]" * DEEP + "}", b"\xc0\xaf",
]


@pytest.mark.parametrize("text", HOSTILE_HALLS, ids=range(len(HOSTILE_HALLS)))
def test_hostile_hall_of_fame_raises_value_error(text):
    with pytest.raises(ValueError):
        loads_hall_of_fame(text)


def test_hostile_files(tmp_path):
    path = tmp_path / "bad.json"
    for data in (b"\xff\xfe", b"[" * DEEP, _j(program="exec(y)").encode()):
        path.write_bytes(data)
        with pytest.raises(ValueError):
            load_loss(path)
        with pytest.raises(ValueError):
            load_hall_of_fame(path)
    path.write_bytes(b" " * (MAX_DOCUMENT_SIZE + 1))
    with pytest.raises(ValueError, match="too large"):
        load_loss(path)
    with pytest.raises(OSError):
        load_loss(tmp_path / "missing.json")


# --------------------------------------------------------------------------- fuzzing


def _only_value_error(fn, arg):
    try:
        fn(arg)
    except ValueError:
        pass


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.binary(max_size=200)))
def test_fuzz_random_text(text):
    _only_value_error(loads_loss, text)
    _only_value_error(loads_hall_of_fame, text)


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=10,
)
LOSS_KEYS = ["format", "version", "program", "task", "link", "coefficients"]
HOF_KEYS = ["program", "infix", "length", "depth", "generation", "mean_test_score", "std_test_score",
            "coefficients"]
# Text drawn mostly from the grammar's own alphabet, to reach deep into parse.
PROGRAM_TEXT = st.text(alphabet=sorted(set("".join(PRIMITIVES) + "yhat(),. -+e0123456789_")), max_size=60)


@st.composite
def mutated(draw, base, keys):
    d = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys) | st.text(max_size=10))
        action = draw(st.sampled_from(["set", "set", "delete", "program"]))
        if action == "delete":
            d.pop(key, None)
        elif action == "program":
            d[key] = draw(PROGRAM_TEXT)
        else:
            d[key] = draw(JSON_LIKE)
    return d


def _fuzz_one(obj):
    text = json.dumps(obj)  # NaN and Infinity come out as JSON tokens
    _only_value_error(loads_loss, text)
    _only_value_error(loads_hall_of_fame, text)
    _only_value_error(loss_from_dict, obj)
    _only_value_error(hall_of_fame_from_dict, obj)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_LIKE)
def test_fuzz_random_structures(obj):
    _fuzz_one(obj)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(_doc(coefficients=[1.0] * 4), LOSS_KEYS),
                 mutated(_hof_doc(), ["format", "version", "task", "entries"]),
                 mutated(_entry(), HOF_KEYS).map(lambda e: _hof_doc(entries=[e]))))
def test_fuzz_mutated_documents(obj):
    _fuzz_one(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_text(data):
    valid = data.draw(st.sampled_from([_j(coefficients=[0.5] * 4), _hj(), _j(program=FOCALISH)]))
    chars = list(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(chars)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        c = data.draw(st.characters() | st.sampled_from(list('[]{}",:0-eE.Nn\\')))
        if op == "insert":
            chars.insert(i, c)
        elif i < len(chars):
            if op == "delete":
                del chars[i]
            else:
                chars[i] = c
    text = "".join(chars)
    _only_value_error(loads_loss, text)
    _only_value_error(loads_hall_of_fame, text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROGRAM_TEXT | st.text(max_size=60))
def test_fuzz_programs(program):
    _only_value_error(loads_loss, _j(program=program))
    _only_value_error(loads_hall_of_fame, json.dumps(_hof_doc(entries=[_entry(), {**_entry(), "program": program}])))
