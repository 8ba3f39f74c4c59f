"""Tests of minigpt.nn's module machinery and basic layers (Parameter, Module, Sequential,
ModuleList, Linear, Embedding, LayerNorm, GELU, Dropout, FeedForward).

Gradients are checked in float64 with central differences against a random upstream gradient
(autograd.gradcheck); forward values against the formula written in NumPy.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor
from minigpt.nn import (
    GELU,
    Dropout,
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    Parameter,
    Sequential,
)


class TwoLayers(Module):
    """A small model for the machinery tests: two Linear layers around a LayerNorm."""

    def __init__(self, rng=0):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.first = Linear(4, 3, rng=rng)
        self.norm = LayerNorm(3)
        self.second = Linear(3, 2, bias=False, rng=rng)

    def forward(self, x):
        return self.second(self.norm(self.first(x)))


def float64_input(shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# ---- Parameter ---------------------------------------------------------------------------------


def test_parameter_is_a_float32_leaf_that_requires_grad():
    parameter = Parameter([1.0, 2.0])
    assert isinstance(parameter, Tensor)
    assert parameter.requires_grad and parameter.is_leaf
    assert parameter.dtype == np.float32
    assert "Parameter containing" in repr(parameter)


def test_parameter_shares_an_arrays_memory_and_keeps_its_dtype():
    array = np.zeros(3)
    parameter = Parameter(array)
    assert parameter.data is array and parameter.dtype == np.float64


def test_parameter_rejects_integer_data():
    with pytest.raises(TypeError, match="floating-point"):
        Parameter(np.arange(3))


# ---- registration and traversal ------------------------------------------------------------------


def test_named_parameters_have_dotted_names_in_assignment_order():
    model = TwoLayers()
    assert [name for name, _ in model.named_parameters()] == [
        "first.weight", "first.bias", "norm.scale", "norm.shift", "second.weight",
    ]
    assert len(list(model.parameters())) == 5
    assert [name for name, _ in model.named_children()] == ["first", "norm", "second"]
    assert [name for name, _ in model.named_modules()] == ["", "first", "norm", "second"]
    assert model.num_parameters() == 4 * 3 + 3 + 3 + 3 + 3 * 2


def test_reassigning_an_attribute_unregisters_it():
    model = TwoLayers()
    model.second = None
    assert "second.weight" not in dict(model.named_parameters())
    del model.first
    assert [name for name, _ in model.named_children()] == ["norm"]


def test_assigning_before_init_names_the_fix():
    class Forgot(Module):
        def __init__(self):
            self.weight = Parameter([1.0])

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Forgot()


def test_shared_parameter_is_listed_once_but_in_state_dict_under_each_name():
    model = TwoLayers()
    model.third = Linear(2, 2)
    model.third.weight = model.first.weight  # shapes differ, but sharing is what is tested
    names = [name for name, _ in model.named_parameters()]
    assert "third.weight" not in names
    assert "third.weight" in model.state_dict()
    assert model.state_dict()["third.weight"] is model.first.weight.data


def test_sequential_and_module_list():
    layers = Sequential(Linear(3, 5, rng=0), GELU(), Linear(5, 2, rng=1))
    assert len(layers) == 3 and isinstance(layers[1], GELU)
    assert [name for name, _ in layers.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert isinstance(layers[:2], Sequential) and len(layers[:2]) == 2
    x = Tensor(np.ones((4, 3), dtype=np.float32))
    assert layers(x).shape == (4, 2)
    modules = ModuleList([Linear(2, 2)]).append(Linear(2, 3))
    modules.extend([GELU()])
    assert len(modules) == 3 and [type(m).__name__ for m in modules] == ["Linear", "Linear", "GELU"]
    assert "1.weight" in dict(modules.named_parameters())
    with pytest.raises(TypeError, match="Module"):
        Sequential(Linear(2, 2), "not a module")


def test_repr_is_a_tree_with_the_attribute_names():
    text = repr(TwoLayers())
    assert text.splitlines()[0] == "TwoLayers("
    assert "(first): Linear(in_features=4, out_features=3, bias=True)" in text
    assert "(norm): LayerNorm((3,), eps=1e-05, elementwise_affine=True, bias=True)" in text
    # PyTorch prints every child of a Sequential, and a run of equal children of a ModuleList once.
    repeated = repr(Sequential(*[Linear(2, 2) for _ in range(3)]))
    assert "(2): Linear(in_features=2, out_features=2, bias=True)" in repeated and " x " not in repeated
    listed = repr(ModuleList([Linear(2, 2), Linear(2, 2), Linear(2, 3)]))
    assert listed == (
        "ModuleList(\n"
        "  (0-1): 2 x Linear(in_features=2, out_features=2, bias=True)\n"
        "  (2): Linear(in_features=2, out_features=3, bias=True)\n"
        ")"
    )


# ---- modes, gradients, dtype ---------------------------------------------------------------------


def test_train_and_eval_reach_every_submodule():
    model = TwoLayers()
    assert model.eval() is model
    assert not any(module.training for module in model.modules())
    model.train()
    assert all(module.training for module in model.modules())


def test_zero_grad_forgets_every_gradient():
    model = TwoLayers()
    model(Tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_float64_and_back_keeps_values_and_sharing():
    model = TwoLayers()
    model.tied = Linear(4, 3)
    model.tied.weight = model.first.weight
    before = {name: value.copy() for name, value in model.state_dict().items()}
    model.to(np.float64)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.tied.weight is model.first.weight
    assert model(Tensor(np.ones((1, 4)))).dtype == np.float64
    model.to(np.float32)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(TypeError, match="floating point"):
        model.to(np.int32)


def test_requires_grad_freezes_parameters():
    model = TwoLayers().requires_grad_(False)
    assert model.num_parameters(trainable_only=True) == 0
    model.second.requires_grad_(True)
    assert model.num_parameters(trainable_only=True) == 6


# ---- state dict ----------------------------------------------------------------------------------


def test_load_state_dict_round_trip_copies_in_place():
    source, target = TwoLayers(rng=1), TwoLayers(rng=2)
    arrays_before = [p.data for p in target.parameters()]
    result = target.load_state_dict({k: v.copy() for k, v in source.state_dict().items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert all(p.data is array for p, array in zip(target.parameters(), arrays_before))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value)


def test_load_state_dict_writes_through_an_optimizers_flat_buffer():
    # An optimizer such as minigpt.optim.AdamW makes every `.data` a view into one flat array.
    model, source = TwoLayers(rng=1), TwoLayers(rng=2)
    flat = np.zeros(model.num_parameters(), dtype=np.float32)
    offset = 0
    for parameter in model.parameters():
        view = flat[offset:offset + parameter.data.size]
        view[...] = parameter.data.reshape(-1)
        parameter.data = view.reshape(parameter.data.shape)
        offset += view.size
    model.load_state_dict(source.state_dict())
    expected = np.concatenate([p.data.reshape(-1) for p in source.parameters()])
    np.testing.assert_array_equal(flat, expected)


def test_load_state_dict_names_missing_and_unexpected_keys_and_changes_nothing():
    model = TwoLayers()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: np.zeros_like(v) for k, v in model.state_dict().items()}
    del state["norm.scale"]
    state["norm.bias"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"missing keys: norm\.scale; unexpected keys: norm\.bias"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["norm.scale"] and result.unexpected_keys == ["norm.bias"]
    assert not model.first.weight.data.any()


def test_load_state_dict_names_both_shapes_of_a_mismatch():
    model = TwoLayers()
    state = dict(model.state_dict())
    state["first.weight"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"first\.weight: checkpoint has shape \(4, 3\), model has \(3, 4\)"):
        model.load_state_dict(state)
    with pytest.raises(ValueError, match="shape mismatch"):
        model.load_state_dict(state, strict=False)


def test_load_state_dict_casts_and_accepts_tensors():
    model = TwoLayers()
    state = {k: Tensor(np.ones(v.shape, dtype=np.float64)) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert model.first.weight.dtype == np.float32 and (model.first.weight.data == 1).all()


def test_load_state_dict_rejects_two_values_for_one_tied_parameter():
    model = TwoLayers()
    model.tied = Linear(4, 3)
    model.tied.weight = model.first.weight
    state = {k: v.copy() for k, v in model.state_dict().items()}
    model.load_state_dict(state)  # equal values: fine
    state["tied.weight"] = state["tied.weight"] + 1
    with pytest.raises(ValueError, match="tied"):
        model.load_state_dict(state)


# ---- Linear --------------------------------------------------------------------------------------


def test_linear_is_x_times_weight_transposed_plus_bias():
    layer = Linear(4, 3, rng=0)
    layer.bias.data[...] = [0.1, -0.2, 0.3]
    x = np.random.default_rng(1).standard_normal((2, 5, 4)).astype(np.float32)
    assert layer.weight.shape == (3, 4)
    out = layer(Tensor(x))
    assert out.dtype == np.float32 and out.shape == (2, 5, 3)
    np.testing.assert_allclose(out.data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-6, atol=1e-6)


def test_linear_gradients_match_finite_differences():
    layer = Linear(4, 3, rng=0).to(np.float64)
    layer.bias.data[...] = [0.1, -0.2, 0.3]
    x = float64_input((2, 3, 4))
    autograd.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


def test_linear_without_bias_and_bad_sizes():
    assert Linear(2, 3, bias=False).bias is None
    assert [name for name, _ in Linear(2, 3, bias=False).named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match="out_features must be a positive integer, got 0"):
        Linear(2, 0)


def test_gpt2_initialisation_is_seedable():
    layer = Linear(256, 512, rng=7, init="gpt2")
    assert abs(layer.weight.data.std() - 0.02) < 0.001 and abs(layer.weight.data.mean()) < 0.001
    assert not layer.bias.data.any()
    np.testing.assert_array_equal(layer.weight.data, Linear(256, 512, rng=7, init="gpt2").weight.data)
    assert not np.array_equal(layer.weight.data, Linear(256, 512, rng=8, init="gpt2").weight.data)
    table = Embedding(1000, 64, rng=np.random.default_rng(3), init="gpt2")
    assert abs(table.weight.data.std() - 0.02) < 0.001 and table.weight.dtype == np.float32
    norm = LayerNorm(5)
    assert (norm.scale.data == 1).all() and not norm.shift.data.any()


# ---- Embedding -----------------------------------------------------------------------------------


def test_embedding_looks_up_rows_and_adds_gradients_of_repeated_ids():
    table = Embedding(6, 3, rng=0).to(np.float64)
    ids = np.array([[1, 4, 1], [0, 1, 5]])
    out = table(ids)
    np.testing.assert_array_equal(out.data, table.weight.data[ids])
    autograd.gradcheck(lambda weight: table(ids), [table.weight])


def test_embedding_rejects_ids_outside_the_table():
    with pytest.raises(ValueError, match=r"id 6 is outside the table's range \[0, 6\)"):
        Embedding(6, 3)(np.array([[0, 6]]))
    with pytest.raises(TypeError, match="integers"):
        Embedding(6, 3)(np.array([[0.0, 1.0]]))


# ---- LayerNorm, GELU -----------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 4), channels=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_layer_norm_rows_have_mean_zero_and_variance_one(rows, channels, seed):
    x = np.random.default_rng(seed).standard_normal((rows, channels)) * 3 + 1
    out = LayerNorm(channels).to(np.float64)(Tensor(x)).data
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    # var + eps in the denominator: the variance is var / (var + eps), a little below 1.
    variance = x.var(axis=-1)
    np.testing.assert_allclose(out.var(axis=-1), variance / (variance + 1e-5), rtol=1e-10)


def test_layer_norm_gradients_with_learned_scale_and_shift():
    norm = LayerNorm(5).to(np.float64)
    rng = np.random.default_rng(0)
    norm.scale.data[...] = rng.standard_normal(5)
    norm.shift.data[...] = rng.standard_normal(5)
    autograd.gradcheck(lambda x, s, b: norm(x), [float64_input((2, 3, 5)), norm.scale, norm.shift])


def test_gelu_matches_the_tanh_formula():
    x = np.linspace(-4, 4, 41)
    expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(GELU()(Tensor(x)).data, expected, rtol=1e-12, atol=1e-15)
    exact = GELU(approximate="none")(Tensor(x)).data
    np.testing.assert_allclose(exact, x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), rtol=1e-12)
    with pytest.raises(ValueError, match="approximate"):
        GELU("sigmoid")


# ---- Dropout -------------------------------------------------------------------------------------


def test_dropout_is_the_identity_in_eval_mode():
    layer = Dropout(0.5, rng=0).eval()
    x = Tensor(np.ones((10, 10), dtype=np.float32))
    assert layer(x) is x


def test_dropout_in_training_zeroes_about_p_and_scales_the_rest():
    layer = Dropout(0.25, rng=np.random.default_rng(0))
    out = layer(Tensor(np.ones((200, 200), dtype=np.float32))).data
    assert out.dtype == np.float32
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.01


def test_dropout_is_reproducible_from_its_generator_state():
    layer = Dropout(0.5, rng=3)
    x = Tensor(np.ones(100, dtype=np.float32))
    state = layer.rng.bit_generator.state
    first = layer(x).data
    layer.rng.bit_generator.state = state
    np.testing.assert_array_equal(layer(x).data, first)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", True])
def test_dropout_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="probability"):
        Dropout(p)


# ---- FeedForward ---------------------------------------------------------------------------------


def test_feed_forward_has_the_books_layers_and_gradients():
    block = FeedForward({"emb_dim": 4}, rng=0).to(np.float64)
    assert [name for name, _ in block.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias",
    ]
    assert block.layers[0].weight.shape == (16, 4) and block.layers[2].weight.shape == (4, 16)
    params = list(block.parameters())
    for p in params:
        p.data[...] = np.random.default_rng(p.data.size).standard_normal(p.shape) * 0.5
    autograd.gradcheck(lambda x, *weights: block(x), [float64_input((2, 3, 4))] + params)
