"""Tests of the graph machinery in autograd/tensor.py.

Construction and dtypes, the backward walk (a 100,000-op chain, accumulation over backward calls,
freed graphs and retain_graph, retain_grad, hooks), no_grad, inspection of the graph, and the
errors a user meets, each with a message that says what was expected and what came.
"""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from autograd.testing import tensors
from support.helpers import leaf




# --------------------------------------------------------------------------------------------
# Construction, dtypes, plain properties
# --------------------------------------------------------------------------------------------


def test_factory_dtypes_follow_torch_tensor():
    assert tensor([1.0, 2.0]).dtype == np.float32  # Python floats -> float32
    assert tensor(1.5).dtype == np.float32
    assert tensor([1, 2]).dtype == np.int64
    assert tensor([True, False]).dtype == np.bool_
    assert tensor(np.zeros(2)).dtype == np.float64  # arrays keep their dtype
    assert tensor(np.zeros(2, dtype=np.float16)).dtype == np.float16
    assert tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(tensor([1.0])).dtype == np.float32


def test_plain_properties_and_conversions():
    x = tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size() == (2, 3) and x.size(1) == 3
    assert x.numel() == 6 and len(x) == 2 and x.is_leaf and x.grad is None and x.grad_fn is None
    assert x.numpy() is x.data and x.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert x.T.shape == (3, 2)
    assert tensor([[2.5]]).item() == 2.5
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element, got shape \(2, 3\)"):
        x.item()
    assert "requires_grad=True" in repr(x) and "dtype=torch.float64" in repr(x)
    assert "grad_fn=<MulBackward0>" in repr(x * 2)


@pytest.mark.parametrize("bad", ["abc", None, object(), [1, "a"], {"a": 1}])
def test_non_numeric_input_raises_type_error(bad):
    with pytest.raises(TypeError, match="data must be numeric"):
        tensor(bad)


@pytest.mark.parametrize("data", [[1, 2], [True], np.arange(3)])
def test_requires_grad_on_a_non_float_tensor_raises_type_error(data):
    with pytest.raises(TypeError, match="requires_grad=True needs a floating-point tensor, got dtype (int64|bool)"):
        tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match="requires_grad=True needs a floating-point tensor"):
        tensor(data).requires_grad_()


def test_non_numeric_operand_raises_type_error():
    with pytest.raises(TypeError, match="must be numeric"):
        tensor([1.0, 2.0]) + "a"


# --------------------------------------------------------------------------------------------
# The backward walk
# --------------------------------------------------------------------------------------------


def test_backward_through_a_100000_op_chain_does_not_recurse():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 2000))  # a recursive walk would need 100,000 frames
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    assert x.grad == 1.0


def test_gradients_accumulate_over_two_backward_calls_on_leaves():
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0 + 3.0, 4.0 + 3.0])
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_a_tensor_used_twice_gets_both_gradients():
    x = leaf([3.0])
    y = x * 2.0
    (y * y + y).sum().backward()  # d/dx (4x^2 + 2x) = 8x + 2
    np.testing.assert_array_equal(x.grad, [26.0])


def test_second_backward_through_a_freed_graph_raises_and_retain_graph_allows_it():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        y.backward()
    x.grad = None
    z = (x.exp() * 2.0).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad, 4.0 * np.exp(x.data))


def test_backward_on_a_non_scalar_without_gradient_raises():
    x = leaf(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"only for a tensor with one element; this one has shape \(2, 3\)"):
        (x * 2.0).backward()
    (x * 2.0)[0:1, 0:1].backward()  # one element, any rank: fine


def test_backward_with_a_gradient_of_the_wrong_shape_raises():
    x = leaf(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"gradient has shape \(3, 2\), expected the tensor's shape \(2, 3\)"):
        (x * 2.0).backward(np.ones((3, 2)))


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tensor([1.0]) * 2.0).sum().backward()


def test_backward_accepts_a_tensor_gradient_and_converts_its_dtype():
    x = tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (x * 2.0).backward(tensor([1.0, 2.0, 3.0], dtype=np.float64))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])


def test_backward_rule_returning_a_wrong_shape_is_reported():
    class Broken(Function):
        def forward(self, a):
            return a * 2

        def backward(self, dout):
            return dout[:1]

    with pytest.raises(RuntimeError, match=r"Broken.backward returned a gradient of shape \(1,\).*input of shape \(3,\)"):
        Broken.apply(leaf([1.0, 2.0, 3.0])).sum().backward()


def test_backward_on_a_leaf_itself():
    x = leaf([1.0, 2.0])
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_only_leaves_that_require_grad_receive_gradients():
    a, b = leaf([1.0]), tensor([2.0], dtype=np.float64)
    y = (a * b).sum()
    assert y.requires_grad and not b.requires_grad
    y.backward()
    assert a.grad is not None and b.grad is None


def test_two_leaves_never_share_one_grad_array():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()  # Add hands the same incoming array to both inputs
    assert not np.shares_memory(a.grad, b.grad)
    a.grad += 10.0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    # Through views (reshape, transpose) and a pass-through gradient given by the user.
    c, d = leaf(np.ones((2, 2))), leaf(np.ones((2, 2)))
    dout = np.ones((2, 2))
    (c.T + d.reshape(4).reshape(2, 2)).backward(dout)
    assert not np.shares_memory(c.grad, d.grad) and not np.shares_memory(c.grad, dout)
    assert not np.shares_memory(d.grad, dout)


def test_grad_has_the_shape_and_dtype_of_its_tensor():
    x = tensor(np.ones((2, 1), dtype=np.float32), requires_grad=True)
    (x * tensor(np.ones((3, 2, 4), dtype=np.float32))).sum().backward()
    assert x.grad.shape == (2, 1) and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.full((2, 1), 12.0))


# --------------------------------------------------------------------------------------------
# retain_grad and hooks
# --------------------------------------------------------------------------------------------


def test_retain_grad_keeps_intermediate_gradients_and_only_those():
    x = leaf([1.0, 2.0])
    y = x * 3.0
    z = y * y
    w = z.sum()
    y.retain_grad()
    w.backward()
    np.testing.assert_array_equal(y.grad, 2 * y.data)  # kept
    assert z.grad is None and w.grad is None  # not asked: not kept
    np.testing.assert_array_equal(x.grad, 18 * x.data)
    with pytest.raises(RuntimeError, match="does not require grad"):
        tensor([1.0]).retain_grad()


def test_register_hook_sees_and_can_replace_a_gradient_and_remove_works():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    seen = []
    handle = y.register_hook(lambda grad: seen.append(grad.copy()))
    (y * y).sum().backward()
    np.testing.assert_array_equal(seen[0], 2 * y.data)  # d(sum y^2)/dy
    np.testing.assert_array_equal(x.grad, 8 * x.data)

    x.grad = None
    y = x * 2.0
    y.register_hook(lambda grad: grad * 0.0 + 1.0)  # replaces the gradient flowing on
    (y * y).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])

    x.grad = None
    seen.clear()
    leaf_handle = x.register_hook(lambda grad: seen.append("leaf") or grad * 10.0)
    (x * 1.0).sum().backward()
    assert seen == ["leaf"]
    np.testing.assert_array_equal(x.grad, [10.0, 10.0])  # a hook on a leaf changes what accumulates

    leaf_handle.remove()
    leaf_handle.remove()  # twice is harmless
    handle.remove()
    x.grad = None
    seen.clear()
    (x * 1.0).sum().backward()
    assert seen == [] and np.array_equal(x.grad, [1.0, 1.0])
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that does not require grad"):
        tensor([1.0]).register_hook(print)


def test_post_accumulate_grad_hook_sees_the_leafs_final_grad_once_per_backward():
    # x is used three times (two branches and a matmul): the hook must run once, after all three
    # contributions are in .grad, and on a second backward after accumulation into the first.
    rng = np.random.default_rng(0)
    x = leaf(rng.normal(size=(3, 3)))
    w = leaf(rng.normal(size=(3, 3)))
    seen = []
    handle = x.register_post_accumulate_grad_hook(lambda tensor: seen.append((tensor is x, x.grad.copy(), w.grad)))

    def loss():
        return ((x * 2.0).sum() + (x @ w).tanh().sum() + (x * x).sum())

    loss().backward()
    assert len(seen) == 1 and seen[0][0]
    first = x.grad.copy()
    reference = autograd.grad(loss(), [x])[0]  # autograd.grad touches no .grad and calls no such hook
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0][1], reference, rtol=1e-12)
    loss().backward()
    assert len(seen) == 2
    np.testing.assert_allclose(seen[1][1], 2 * first, rtol=1e-12)  # sees the accumulated .grad
    handle.remove()
    loss().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="non-leaf tensors: this tensor was computed by"):
        (x * 2.0).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="does not require grad"):
        tensor([1.0]).register_post_accumulate_grad_hook(print)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.sampled_from(["add", "mul", "tanh_mul"])),
                min_size=1, max_size=12))
def test_post_accumulate_grad_hooks_fire_once_with_the_final_grad_on_random_graphs(program):
    # Random graphs over 4 leaves in which values are reused many times: each leaf's hook fires
    # once per backward, and what it sees is the leaf's final .grad of that backward.
    rng = np.random.default_rng(len(program))
    leaves = [leaf(rng.normal(size=3)) for _ in range(4)]
    values = list(leaves)
    for first, second, kind in program:
        a, b = values[first % len(values)], values[second % len(values)]
        values.append(a + b if kind == "add" else a * b if kind == "mul" else (a * b).tanh())
    seen = {}
    for number, parameter in enumerate(leaves):
        parameter.register_post_accumulate_grad_hook(lambda tensor, number=number: seen.setdefault(number, []).append(tensor.grad.copy()))
    sum(value.sum() for value in values[4:]).backward()
    for number, parameter in enumerate(leaves):
        if parameter.grad is None:  # not used by the program
            assert number not in seen
        else:
            assert len(seen[number]) == 1
            np.testing.assert_array_equal(seen[number][0], parameter.grad)


def test_post_accumulate_grad_hooks_run_from_the_output_back_to_the_input():
    # The order data-parallel buckets rely on: the last layer's weight is complete first.
    first, second, third = (leaf(np.full((2, 2), value)) for value in (0.5, 1.5, 2.5))
    order = []
    for name, parameter in (("first", first), ("second", second), ("third", third)):
        parameter.register_post_accumulate_grad_hook(lambda tensor, name=name: order.append(name))
    x = leaf(np.ones((1, 2)))
    (((x @ first).tanh() @ second).tanh() @ third).sum().backward()
    assert order == ["third", "second", "first"]


# --------------------------------------------------------------------------------------------
# no_grad
# --------------------------------------------------------------------------------------------


def test_no_grad_as_a_context_manager_records_nothing():
    x = leaf([1.0, 2.0])
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2.0).exp().sum()
        with enable_grad():
            assert is_grad_enabled()
            z = x * 2.0
        assert not is_grad_enabled()
    assert is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None


def test_no_grad_as_a_decorator_records_nothing_and_restores_on_error():
    x = leaf([1.0, 2.0])

    @no_grad()
    def evaluate(x):
        assert not is_grad_enabled()
        return autograd.functional.softmax(x * x, -1)

    y = evaluate(x)
    assert not y.requires_grad and y.grad_fn is None and is_grad_enabled()
    assert evaluate.__name__ == "evaluate"

    @no_grad()
    def fails():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fails()
    assert is_grad_enabled()


@settings(max_examples=25, deadline=None)
@given(x=tensors())
def test_no_grad_results_are_leaves_without_grad(x):
    with no_grad():
        y = (x * x + 1.0).sum()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf


def test_detach_cuts_the_graph_and_shares_data():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and np.shares_memory(d.data, y.data)
    (x * d).sum().backward()  # d is a constant: no gradient flows back through it
    np.testing.assert_array_equal(x.grad, d.data)


# --------------------------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------------------------


def test_grad_fn_names_the_op_and_its_inputs():
    a, b = leaf(np.ones((2, 3))), leaf(np.ones((3, 4)))
    c = a @ b
    assert c.grad_fn.name == "Matmul" and repr(c.grad_fn) == "<Matmul>"
    assert len(c.grad_fn.inputs) == 2 and c.grad_fn.inputs[0] is a and c.grad_fn.inputs[1] is b
    s = c.sum()
    assert s.grad_fn.name == "Sum" and s.grad_fn.inputs[0] is c
    assert a.grad_fn is None and a.is_leaf and not c.is_leaf


def test_graph_prints_ops_shapes_and_dtypes():
    a = tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    b = tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    text = (a @ b).sum().graph()
    lines = text.splitlines()
    assert lines[0].startswith("Sum") and "shape=()" in lines[0] and "float32" in lines[0]
    assert lines[1].strip().startswith("Matmul") and "shape=(2, 4)" in lines[1]
    assert "leaf  shape=(2, 3)  float32  requires_grad" in lines[2]
    assert "leaf  shape=(3, 4)  float32  requires_grad" in lines[3]
    assert lines[2].startswith("    ")  # indented under Matmul


def test_graph_shows_a_shared_node_once_and_a_freed_graph():
    x = leaf([1.0, 2.0])
    y = x.exp()
    z = (y * y).sum()
    text = z.graph()
    assert text.count("Exp") == 2 and "(see above)" in text
    z.backward()
    assert "(graph freed)" in z.graph()


# --------------------------------------------------------------------------------------------
# A user-defined Function
# --------------------------------------------------------------------------------------------


def test_user_function_with_needs_input_grad():
    class ScaledAdd(Function):
        """out = a + scale * b."""

        def forward(self, a, b, scale):
            self.scale = scale
            return a + scale * b

        def backward(self, dout):
            calls.append(self.needs_input_grad)
            da = dout if self.needs_input_grad[0] else None
            db = dout * self.scale if self.needs_input_grad[1] else None
            return da, db

    calls = []
    a, b = leaf([1.0]), tensor([2.0], dtype=np.float64)
    out = ScaledAdd.apply(a, b, scale=3.0)
    assert out.data[0] == 7.0 and out.grad_fn.name == "ScaledAdd"
    out.backward(np.array([1.0]))
    assert calls == [(True, False)]
    np.testing.assert_array_equal(a.grad, [1.0])
    with no_grad():
        assert ScaledAdd.apply(a, b, scale=1.0).grad_fn is None


def test_a_backward_rule_runs_two_frames_below_tensor_backward():
    """The learner's path (issue 21): Tensor.backward -> _run_backward -> SomeOp.backward, nothing in
    between (no process settings, no helper frames), for every primitive op of a small graph."""
    import sys

    x = tensor(np.arange(6.0).reshape(2, 3) + 1, requires_grad=True)
    w = tensor(np.ones((3, 2)), requires_grad=True)
    loss = ((x @ w).exp().log() * 2 - x.sum(dim=1, keepdim=True)).mean()
    callers = {}

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "backward" and frame.f_code.co_qualname != "Tensor.backward":
            callers[frame.f_code.co_qualname] = (frame.f_back.f_code.co_name, frame.f_back.f_back.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        loss.backward()
    finally:
        sys.setprofile(None)
    assert set(callers) == {"Mean.backward", "Sub.backward", "Mul.backward", "Log.backward", "Exp.backward",
                            "Matmul.backward", "Sum.backward"}
    assert set(callers.values()) == {("_run_backward", "Tensor.backward")}


# --------------------------------------------------------------------------------------------
# In-place arithmetic: x += y, x -= y, x *= y, x /= y (PyTorch's autograd rules)
# --------------------------------------------------------------------------------------------


def test_manual_sgd_under_no_grad_changes_the_parameters_in_place_as_appendix_a():
    from minigpt import nn

    autograd.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    features = tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    loss = autograd.functional.cross_entropy(model(features), np.array([0, 1, 1, 0, 1]))
    loss.backward()
    parameters = list(model.parameters())
    expected = [p.data - 0.1 * p.grad for p in parameters]  # what `p.data -= lr * p.grad` gives
    arrays_before = [p.data for p in parameters]
    with no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad  # appendix A's training loop, written as in PyTorch
    for p, array, want in zip(model.parameters(), arrays_before, expected):
        assert p.data is array  # changed in place, not rebound to a new array
        np.testing.assert_array_equal(p.data, want)
        assert p.requires_grad and p.is_leaf and p._version == 1 and p.dtype == np.float32
    assert [id(p) for p in model.parameters()] == [id(p) for p in parameters]


@pytest.mark.parametrize("change", [
    lambda w: w.__iadd__(1.0), lambda w: w.__isub__(1.0), lambda w: w.__imul__(2.0), lambda w: w.__itruediv__(2.0),
], ids=["+=", "-=", "*=", "/="])
def test_in_place_arithmetic_on_a_leaf_that_requires_grad_raises_outside_no_grad(change):
    weight = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"__i\w+__: a leaf Variable that requires grad is being used in an in-place operation"):
        change(weight)
    assert weight.data.tolist() == [1.0, 2.0] and weight._version == 0


def test_in_place_arithmetic_on_a_non_leaf_is_recorded_and_backpropagates():
    x = leaf([1.0, 2.0, -0.5])
    y = x * 3.0
    y += 1  # y = 3x + 1
    y *= y  # y = (3x + 1)^2
    y -= x  # y = (3x + 1)^2 - x
    y /= 2.0  # y = ((3x + 1)^2 - x) / 2
    np.testing.assert_allclose(y.data, ((3 * x.data + 1) ** 2 - x.data) / 2)
    assert y.grad_fn.name == "Div" and y._version == 4 and not y.is_leaf
    dout = np.array([0.5, -1.0, 2.0])
    y.backward(dout)
    np.testing.assert_allclose(x.grad, dout * (6 * (3 * x.data + 1) - 1) / 2)
    assert autograd.gradcheck(_chained_in_place, [leaf([0.3, -1.2])])


def _chained_in_place(a):
    out = a * 1.0
    out += a
    out *= a
    return out


def test_in_place_arithmetic_adds_a_tensor_without_grad_to_the_graph_when_the_value_requires_grad():
    weight = leaf([3.0, 4.0])
    total = tensor(np.zeros(2))  # an accumulator: no gradient of its own
    total += weight * 2.0
    assert total.requires_grad and total.grad_fn.name == "Add"
    total.sum().backward()
    np.testing.assert_array_equal(weight.grad, [2.0, 2.0])


def test_in_place_arithmetic_writes_the_array_of_a_tensor_without_grad():
    array = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    x = autograd.from_numpy(array)
    x *= 2
    x += tensor([1.0, 1.0, 1.0])
    x -= np.float32(0.5)
    x /= 2
    np.testing.assert_array_equal(array, [1.25, 2.25, 3.25])  # the array itself, as torch.from_numpy
    assert x.data is array and x.dtype == np.float32 and x._version == 4
    counts = tensor([1, 2])
    counts *= 3
    counts += np.int32(1)
    assert counts.tolist() == [4, 7] and counts.dtype == np.int64
    narrow = tensor([1.0], dtype=np.float32)
    narrow += np.array([0.25])  # a float64 operand: the result stays float32, as PyTorch
    assert narrow.dtype == np.float32 and narrow.tolist() == [1.25]


def test_in_place_arithmetic_rejects_a_result_of_another_kind_or_shape():
    counts = tensor([1, 2])
    with pytest.raises(TypeError, match=r"__iadd__: x \+= other gives dtype float32, which cannot be stored in place in x of dtype int64"):
        counts += 0.5
    with pytest.raises(TypeError, match=r"__itruediv__: x /= other gives dtype float32, which cannot be stored in place in x of dtype int64"):
        counts /= 2
    with pytest.raises(TypeError, match=r"__imul__: x \*= other gives dtype float64, .* dtype int64 \(other has dtype float64\)"):
        counts *= np.array([1.0, 2.0])
    assert counts.tolist() == [1, 2] and counts._version == 0
    x = tensor([1.0, 2.0])
    with pytest.raises(ValueError, match=r"__isub__: other of shape \(3, 2\) does not broadcast to x's shape \(2,\)"):
        x -= np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"__iadd__: other of shape \(3,\) does not broadcast to x's shape \(2,\)"):
        x += tensor([1.0, 2.0, 3.0])
