"""The two versions of every fused op agree, and the switch between them (issue 21, item 1).

`autograd/reference/` (plain NumPy, what a learner reads) and `autograd/fast/` (blocked, in place,
threaded) must compute the same values and gradients: on hypothesis-drawn shapes and values, each
op is run forward in both modes and backward from a *random* upstream gradient (never the plain
sum, which is blind for softmax and layer norm), and outputs and every input's gradient are
compared: float64 to 1e-12 and float32 to 1e-5, relative to the largest magnitude of the expected
array (at least 1). Dropout (and attention dropout) must draw the same mask from the same generator state.
Then a whole GPT training step (loss and every parameter's gradient) in both modes; then
finite-difference checks of the reference ops of softmax.py, cross_entropy.py, sigmoid.py and
losses.py (the other reference files' checks are in tests/test_reference_layers.py); then the
switch: `set_kernels`, `kernels(...)`, `get_kernels`, `MINIGPT_KERNELS` and their errors.
"""

from __future__ import annotations

import ast
import glob
import inspect
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import functional as F
from autograd import gradcheck
from autograd.fast import attention as fast_attention
from autograd.kernels import KERNEL_SETS, get
from autograd.testing import arrays, dims, shapes

TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
FLOAT_DTYPES = st.sampled_from([np.float32, np.float64])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_close(actual, expected, what: str) -> None:
    """actual == expected to TOLERANCE relative to the largest finite |expected| (infs must match).

    Scaled by at least 1: the inputs and upstream gradients here are O(1), so a value that cancels
    to near 0 (GELU's gradient at x = -3.75 is 1e-4, the difference of two O(1) terms) keeps the
    rounding error of those terms, about 1e-7 in float32.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (
        f"{what}: reference gives {expected.shape} {expected.dtype}, fast {actual.shape} {actual.dtype}")
    tolerance = TOLERANCE[expected.dtype]
    finite = expected[np.isfinite(expected)]
    scale = max(float(np.max(np.abs(finite))) if finite.size else 0.0, 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale, err_msg=what)


def run(mode: str, fn, arrays_in, seed: int, requires_grad=None):
    """fn(*tensors) forward in `mode`, then backward from a random gradient; (out, grads)."""
    requires_grad = requires_grad or [True] * len(arrays_in)
    with autograd.kernels(mode):
        tensors = [autograd.tensor(a.copy(), requires_grad=r) for a, r in zip(arrays_in, requires_grad)]
        out = fn(*tensors)
        dout = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
        out.backward(dout)
    return out.data, [t.grad for t, r in zip(tensors, requires_grad) if r]


def assert_modes_agree(fn, arrays_in, seed: int = 0, requires_grad=None, name: str = "op") -> None:
    """The reference and fast versions of fn give the same output and input gradients."""
    expected, expected_grads = run("reference", fn, arrays_in, seed, requires_grad)
    actual, actual_grads = run("fast", fn, arrays_in, seed, requires_grad)
    assert_close(actual, expected, f"{name}: output")
    for number, (got, want) in enumerate(zip(actual_grads, expected_grads)):
        assert_close(got, want, f"{name}: gradient of input {number}")


# ------------------------------------------------------------------------------------------------
# Every op, both modes, hypothesis-drawn shapes and values
# ------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, log=st.booleans(), seed=st.integers(0, 2**16))
def test_softmax_and_log_softmax_agree(data, dtype, log, seed):
    x = data.draw(arrays(shapes(1, 4), low=-6, high=6, dtype=dtype))
    dim = data.draw(dims(x.ndim))
    if data.draw(st.booleans(), label="mask some entries with -inf"):
        x = np.where(np.random.default_rng(seed).random(x.shape) < 0.3, -np.inf, x).astype(dtype)
    function = F.log_softmax if log else F.softmax
    assert_modes_agree(lambda t: function(t, dim), [x], seed, name=function.__name__)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16))
def test_cross_entropy_agrees(data, dtype, reduction, seed):
    rows, classes = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 7))
    logits = data.draw(arrays((rows, classes), low=-8, high=8, dtype=dtype))
    targets = np.random.default_rng(seed).integers(0, classes, rows)
    ignored = data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
    targets = np.where(ignored, -100, targets)
    if all(ignored) and reduction == "mean":
        targets[0] = 0  # the mean of no rows is NaN in both modes; checked in its own test
    assert_modes_agree(lambda t: F.cross_entropy(t, targets, reduction=reduction), [logits], seed, name="cross_entropy")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_ignored_rows_with_inf_and_nan_agree(reduction):
    logits = np.random.default_rng(3).standard_normal((5, 4))
    logits[1, 2], logits[3] = np.inf, np.nan  # rows 1 and 3 are ignored: they must not matter
    targets = np.array([0, -100, 3, -100, 1])
    assert_modes_agree(lambda t: F.cross_entropy(t, targets, reduction=reduction), [logits], name="cross_entropy")
    with autograd.kernels("reference"):
        loss = F.cross_entropy(autograd.tensor(np.zeros((2, 3)), requires_grad=True), np.array([-100, -100]))
    assert np.isnan(loss.item())


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, approximate=st.sampled_from(["tanh", "none"]), seed=st.integers(0, 2**16))
def test_gelu_agrees(data, dtype, approximate, seed):
    x = data.draw(arrays(shapes(0, 3), low=-5, high=5, dtype=dtype))
    assert_modes_agree(lambda t: F.gelu(t, approximate=approximate), [x], seed, name="gelu")


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, eps=st.sampled_from([1e-5, 1e-2]), seed=st.integers(0, 2**16))
def test_layer_norm_agrees(data, dtype, eps, seed):
    x = data.draw(arrays(shapes(1, 3, min_side=2), low=-4, high=4, dtype=dtype))
    channels = x.shape[-1]
    weight = data.draw(arrays((channels,), dtype=dtype))
    bias = data.draw(arrays((channels,), dtype=dtype))
    assert_modes_agree(lambda t, w, b: F.layer_norm(t, w, b, eps=eps), [x, weight, bias], seed, name="layer_norm")


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, p=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_dropout_agrees_with_the_same_generator_state(data, dtype, p, seed):
    x = data.draw(arrays(shapes(1, 3), dtype=dtype))
    # A new generator of the same seed in each mode: the same state, so the same mask.
    assert_modes_agree(lambda t: F.dropout(t, p, rng=np.random.default_rng(seed)), [x], seed, name="dropout")
    outputs = []
    for mode in KERNEL_SETS:
        autograd.manual_seed(seed)  # the default generator too
        with autograd.kernels(mode):
            outputs.append(F.dropout(autograd.tensor(x), p).data)
    np.testing.assert_array_equal(outputs[0] == 0, outputs[1] == 0)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, seed=st.integers(0, 2**16))
def test_embedding_agrees(data, dtype, seed):
    vocab, channels = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    weight = data.draw(arrays((vocab, channels), dtype=dtype))
    ids = np.random.default_rng(seed).integers(0, vocab, data.draw(shapes(1, 2, max_side=5)))  # repeats likely
    assert_modes_agree(lambda w: F.embedding(ids, w), [weight], seed, name="embedding")


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, bias=st.booleans(), seed=st.integers(0, 2**16),
       lead=st.sampled_from([(1,), (3,), (2, 5), (40,), (3, 12)]))  # up to and beyond fast's _FEW_ROWS
def test_linear_agrees(data, dtype, bias, seed, lead):
    features_in, features_out = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    x = data.draw(arrays(lead + (features_in,), dtype=dtype))
    weight = data.draw(arrays((features_out, features_in), dtype=dtype))
    inputs = [x, weight] + ([data.draw(arrays((features_out,), dtype=dtype))] if bias else [])
    assert_modes_agree(lambda *t: F.linear(*t), inputs, seed, name="linear")


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, causal=st.booleans(), dropout_p=st.sampled_from([0.0, 0.3]),
       query_block=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_attention_agrees(data, dtype, causal, dropout_p, query_block, seed):
    batch = data.draw(st.sampled_from([(1,), (2,), (2, 3)]))
    queries, keys, head_size = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 4))
    q = data.draw(arrays(batch + (queries, head_size), dtype=dtype))
    k = data.draw(arrays(batch + (keys, head_size), dtype=dtype))
    v = data.draw(arrays(batch + (keys, head_size), dtype=dtype))

    def attention(q, k, v):  # a new generator of one seed per call: the same dropout mask in both modes
        rng = np.random.default_rng(seed) if dropout_p else None
        return F.scaled_dot_product_attention(q, k, v, causal=causal, dropout_p=dropout_p, rng=rng)

    # Small query blocks, so that fast's blocked causal path is the one compared.
    with mock.patch.object(fast_attention, "_QUERY_BLOCK", query_block):
        assert_modes_agree(attention, [q, k, v], seed, name="scaled_dot_product_attention")


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=FLOAT_DTYPES, reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16),
       op=st.sampled_from(["sigmoid", "logsigmoid", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss"]))
def test_sigmoid_and_losses_agree(data, dtype, reduction, seed, op):
    shape = data.draw(shapes(0, 3))
    x = data.draw(arrays(shape, low=-6, high=6, dtype=dtype))
    y = data.draw(arrays(shape, low=0, high=1, dtype=dtype))
    if op in ("sigmoid", "logsigmoid"):
        assert_modes_agree(getattr(F, op), [x], seed, name=op)
    elif op == "binary_cross_entropy":
        p = data.draw(arrays(shape, low=0.05, high=0.95, dtype=dtype))
        assert_modes_agree(lambda t: F.binary_cross_entropy(t, y, reduction), [p], seed, name=op)
    elif op == "binary_cross_entropy_with_logits":
        assert_modes_agree(lambda t: F.binary_cross_entropy_with_logits(t, y, reduction), [x], seed, name=op)
    else:
        assert_modes_agree(lambda a, b: F.mse_loss(a, b, reduction), [x, y], seed, name=op)


def test_every_op_has_both_versions_with_one_forward_signature():
    with autograd.kernels("reference"):
        reference = {name: get(name) for name in _OP_NAMES}
    with autograd.kernels("fast"):
        fast = {name: get(name) for name in _OP_NAMES}
    for name in _OP_NAMES:
        assert reference[name].__module__.startswith("autograd.reference."), name
        assert fast[name].__module__.startswith(("autograd.fast.", "autograd.reference.")), name
        assert inspect.signature(reference[name].forward) == inspect.signature(fast[name].forward), name
        assert reference[name].__name__ == fast[name].__name__ == name


_OP_NAMES = ["Softmax", "LogSoftmax", "CrossEntropy", "Gelu", "LayerNorm", "Dropout", "Embedding", "Linear",
             "ScaledDotProductAttention", "Sigmoid", "LogSigmoid", "BinaryCrossEntropy",
             "BinaryCrossEntropyWithLogits", "MSELoss"]


# ------------------------------------------------------------------------------------------------
# A whole GPT training step
# ------------------------------------------------------------------------------------------------


def _gpt_step(mode: str, drop_rate: float, dtype):
    """Loss and every parameter's gradient of one training step of a tiny GPT (seeded)."""
    from minigpt.model import GPTModel  # the model is minigpt's; the engine tests import it here only

    cfg = {"vocab_size": 31, "context_length": 12, "emb_dim": 16, "n_heads": 2, "n_layers": 2,
           "drop_rate": drop_rate, "qkv_bias": True}
    with autograd.kernels(mode):
        autograd.manual_seed(123)
        model = GPTModel(cfg).to(dtype)
        model.train()
        ids = np.random.default_rng(7).integers(0, cfg["vocab_size"], (2, 13))
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
    return loss.data, {name: parameter.grad for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("query_block", [128, 4])
@pytest.mark.parametrize("drop_rate", [0.0, 0.25])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_gpt_training_step_gives_the_same_loss_and_gradients(drop_rate, dtype, query_block):
    with mock.patch.object(fast_attention, "_QUERY_BLOCK", query_block):
        expected_loss, expected = _gpt_step("reference", drop_rate, dtype)
        loss, gradients = _gpt_step("fast", drop_rate, dtype)
    assert_close(loss, expected_loss, "loss")
    assert expected.keys() == gradients.keys() and len(expected) > 10
    for name in expected:
        assert_close(gradients[name], expected[name], f"gradient of {name}")


# ------------------------------------------------------------------------------------------------
# Finite differences for the reference ops of softmax.py, cross_entropy.py, sigmoid.py, losses.py
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def reference_kernels():
    with autograd.kernels("reference"):
        yield


@settings(max_examples=25, deadline=None)
@given(data=st.data(), log=st.booleans())
def test_reference_softmax_gradients(data, log):
    x = autograd.tensor(data.draw(arrays(shapes(1, 3))), requires_grad=True)
    dim = data.draw(dims(x.ndim))
    with autograd.kernels("reference"):
        assert gradcheck(lambda t: (F.log_softmax if log else F.softmax)(t, dim), [x])


@settings(max_examples=25, deadline=None)
@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**16))
def test_reference_cross_entropy_gradients(data, reduction, seed):
    rows, classes = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    logits = autograd.tensor(data.draw(arrays((rows, classes))), requires_grad=True)
    targets = np.random.default_rng(seed).integers(0, classes, rows)
    targets[np.random.default_rng(seed + 1).random(rows) < 0.3] = -100
    targets[0] = 0  # at least one counted row
    with autograd.kernels("reference"):
        assert gradcheck(lambda t: F.cross_entropy(t, targets, reduction=reduction), [logits])


@settings(max_examples=25, deadline=None)
@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]),
       op=st.sampled_from(["sigmoid", "logsigmoid", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss"]))
def test_reference_sigmoid_and_loss_gradients(data, reduction, op):
    shape = data.draw(shapes(0, 3))
    low = 0.05 if op == "binary_cross_entropy" else -4
    x = autograd.tensor(data.draw(arrays(shape, low=low, high=0.95 if low > 0 else 4)), requires_grad=True)
    y = data.draw(arrays(shape, low=0, high=1))
    with autograd.kernels("reference"):
        if op in ("sigmoid", "logsigmoid"):
            assert gradcheck(getattr(F, op), [x])
        elif op == "mse_loss":
            assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [x, autograd.tensor(y, requires_grad=True)])
        else:
            assert gradcheck(lambda t: getattr(F, op)(t, y, reduction), [x])


def test_reference_masked_softmax_entries_get_exactly_zero_gradient(reference_kernels):
    x = autograd.tensor(np.array([[0.5, -np.inf, 2.0], [-np.inf, -np.inf, -np.inf]]), requires_grad=True)
    for function in (F.softmax, F.log_softmax):
        out = function(x, -1)
        out.backward(np.array([[1.0, 2.0, -3.0], [1.0, 1.0, 1.0]]))
        assert x.grad[0, 1] == 0 and np.all(x.grad[1] == 0) and np.all(np.isfinite(x.grad)), function.__name__
        assert not np.isnan(out.data).any(), function.__name__
        x.grad = None


def test_reference_kernels_keep_float32(reference_kernels):
    x = autograd.tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    for out in (F.softmax(x, -1), F.log_softmax(x, 0), F.cross_entropy(x, np.array([0, 1, 3])), F.sigmoid(x), F.logsigmoid(x)):
        out.backward(np.ones(out.shape, np.float32))
        assert out.dtype == np.float32 and x.grad.dtype == np.float32
        x.grad = None


# ------------------------------------------------------------------------------------------------
# The switch
# ------------------------------------------------------------------------------------------------


def test_set_kernels_and_get():
    before = autograd.get_kernels()
    try:
        autograd.set_kernels("reference")
        assert autograd.get_kernels() == "reference" and get("Softmax").__module__ == "autograd.reference.softmax"
        autograd.set_kernels("fast")
        assert autograd.get_kernels() == "fast" and get("Softmax").__module__ == "autograd.fast.softmax"
    finally:
        autograd.set_kernels(before)


def test_the_context_manager_restores_the_previous_set_even_after_an_error():
    before = autograd.get_kernels()
    with autograd.kernels("reference"):
        with autograd.kernels("fast"):
            assert autograd.get_kernels() == "fast"
        assert autograd.get_kernels() == "reference"
    assert autograd.get_kernels() == before
    with pytest.raises(KeyError), autograd.kernels("reference"):
        raise KeyError("inside")
    assert autograd.get_kernels() == before


def test_a_graph_is_differentiated_by_the_set_that_built_it():
    x = autograd.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    with autograd.kernels("reference"):
        out = F.softmax(x, -1)
    assert type(out.grad_fn).__module__ == "autograd.reference.softmax"
    with autograd.kernels("fast"):
        out.backward(np.ones((2, 3)))


@pytest.mark.parametrize("bad", ["slow", "Reference", "", None, 1])
def test_bad_names_are_refused(bad):
    before = autograd.get_kernels()
    with pytest.raises(ValueError, match=r"must be 'reference' or 'fast', got " + repr(bad).replace("(", r"\(")):
        autograd.set_kernels(bad)
    with pytest.raises(ValueError, match="kernels: name must be 'reference' or 'fast'"):
        autograd.kernels(bad)
    assert autograd.get_kernels() == before


def test_get_names_the_ops_when_asked_for_an_unknown_one():
    with pytest.raises(KeyError, match="no fused op named 'Softmaks'.*CrossEntropy"):
        get("Softmaks")
    assert autograd.kernels.get("Gelu") is get("Gelu")  # the context manager carries the module's functions


def _python(code: str, value: str | None):
    environment = {k: v for k, v in os.environ.items() if k != "MINIGPT_KERNELS"}
    if value is not None:
        environment["MINIGPT_KERNELS"] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("value, expected", [(None, "fast"), ("", "fast"), ("fast", "fast"), ("reference", "reference")])
def test_the_environment_variable_chooses_the_set_at_import(value, expected):
    result = _python("import autograd; from autograd.kernels import get; print(autograd.get_kernels(), get('CrossEntropy').__module__)", value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected, f"autograd.{expected}.cross_entropy"]


def test_a_bad_environment_variable_names_itself_the_values_and_what_came():
    """Raised at the first fused op (or get_kernels), not at import: set_kernels may still choose a set."""
    message = "ValueError: the environment variable MINIGPT_KERNELS must be 'reference' or 'fast', got 'quick'"
    for code in ("import autograd; autograd.get_kernels()", "import autograd; autograd.tensor([1.0]).softmax(0)"):
        result = _python(code, "quick")
        assert result.returncode != 0 and message in result.stderr, (code, result.stderr)
    result = _python("import autograd; autograd.set_kernels('reference'); print(autograd.tensor([1.0]).softmax(0).item())", "quick")
    assert result.returncode == 0 and result.stdout.split() == ["1.0"], result.stderr
    result = _python("import autograd\nwith autograd.kernels('fast'): print(autograd.get_kernels())\n"
                     "try:\n    autograd.get_kernels()\nexcept ValueError as error: print('after:', error)", "quick")
    assert result.stdout.splitlines() == ["fast", "after: " + message.removeprefix("ValueError: ")], result.stderr


def _imported_modules(path: str) -> set[str]:
    """Every module a file imports, anywhere in it (`from a import b` counts as a.b)."""
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# autograd.random is a leaf (NumPy only): the dropout mask is PyTorch's bernoulli_ draw.
_KERNEL_IMPORTS = ("numpy", "math", "__future__.annotations", "autograd.function.Function", "autograd.reference.",
                   "autograd.random.bernoulli_keep")


@pytest.mark.parametrize("files, allowed", [
    ("reference/*.py", _KERNEL_IMPORTS),
    ("fast/*.py", _KERNEL_IMPORTS + ("autograd.fast.", "autograd.parallel.")),
    ("kernels.py", _KERNEL_IMPORTS + ("autograd.fast.", "os")),
])
def test_kernels_import_only_numpy_math_function_and_each_other(files, allowed):
    """No circle through the engine: the kernels never import tensor, ops, functional or autograd itself."""
    paths = sorted(glob.glob(os.path.join(ROOT, "autograd", files)))
    assert paths
    offenders = {os.path.relpath(path, ROOT): sorted(name for name in _imported_modules(path)
                                                     if not (name in allowed or name.startswith(allowed)))
                 for path in paths}
    assert not {path: names for path, names in offenders.items() if names}
