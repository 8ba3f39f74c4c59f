"""Tests of minigpt.nn.lora: LoRALayer init and forward, wrapping every Linear, freezing, exact
outputs of a freshly wrapped model, gradients in float64, merging back into plain Linear layers
(logits, state dict, export), and the cost: no gradient buffers and no AdamW state for the frozen
base weights. The book's counts are in tests/book/test_appendix_e.py.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor
from autograd import functional as F
from autograd.testing import arrays
from minigpt.model import GPTModel
from minigpt.nn import Linear, LinearWithLoRA, LoRALayer, Sequential, GELU, merge_lora, replace_linear_with_lora
from minigpt.optim import AdamW

TINY = dict(vocab_size=31, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0, qkv_bias=True)


def tiny_ids(batch=2, num_tokens=8, seed=0):
    return np.random.default_rng(seed).integers(0, TINY["vocab_size"], (batch, num_tokens))


def randomize_lora(model, seed=1, scale=0.3):
    """Give every B non-zero values, so the LoRA path changes the output."""
    rng = np.random.default_rng(seed)
    for module in model.modules():
        if isinstance(module, LoRALayer):
            module.B.data[...] = rng.standard_normal(module.B.shape) * scale


def freeze(model):
    for parameter in model.parameters():  # the book's freezing loop (appendix E.5)
        parameter.requires_grad = False


# ---- LoRALayer -----------------------------------------------------------------------------------


def test_lora_layer_init_is_the_books_kaiming_uniform_and_zero_b():
    layer = LoRALayer(in_dim=300, out_dim=7, rank=4, alpha=8, rng=0)
    assert layer.A.shape == (300, 4) and layer.B.shape == (4, 7)
    assert layer.A.dtype == np.float32 and layer.B.dtype == np.float32
    assert np.all(layer.B.data == 0)
    # kaiming_uniform_(A, a=sqrt(5)) on a (in, rank) tensor: U(-1/sqrt(rank), 1/sqrt(rank)).
    bound = 1 / math.sqrt(4)
    assert np.abs(layer.A.data).max() <= bound
    assert np.abs(layer.A.data).max() > 0.95 * bound  # spread over the whole interval
    assert abs(layer.A.data.std() - bound / math.sqrt(3)) < 0.02  # std of U(-b, b) is b / sqrt(3)
    assert layer.scaling == 2.0
    np.testing.assert_array_equal(LoRALayer(300, 7, 4, 8, rng=0).A.data, layer.A.data)  # seeded


def test_lora_layer_forward_is_scaled_x_a_b():
    layer = LoRALayer(5, 3, rank=2, alpha=6, rng=0)
    layer.B.data[...] = np.random.default_rng(1).standard_normal((2, 3))
    x = np.random.default_rng(2).standard_normal((2, 4, 5)).astype(np.float32)
    out = layer(Tensor(x))
    assert out.shape == (2, 4, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, 3.0 * x @ layer.A.data @ layer.B.data, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((5, 3, 0, 1), "rank must be a positive integer"),
        ((5, 3, 2.5, 1), "rank must be a positive integer"),
        ((0, 3, 2, 1), "in_dim must be a positive integer"),
        ((5, 3, 2, float("nan")), "alpha must be a finite number"),
        ((5, 3, 2, "16"), "alpha must be a finite number"),
    ],
)
def test_lora_layer_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        LoRALayer(*arguments)


def test_linear_with_lora_needs_a_linear_and_keeps_its_sizes():
    with pytest.raises(TypeError, match="linear must be a minigpt.nn.Linear"):
        LinearWithLoRA(GELU(), 2, 2)
    wrapped = LinearWithLoRA(Linear(6, 4, rng=0), rank=3, alpha=3, rng=0)
    assert (wrapped.in_features, wrapped.out_features) == (6, 4)
    assert [name for name, _ in wrapped.named_parameters()] == ["linear.weight", "linear.bias", "lora.A", "lora.B"]
    assert "rank=3" in repr(wrapped)


@settings(max_examples=25)
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)).flatmap(
        lambda sizes: st.tuples(
            st.just(sizes),
            arrays((sizes[0], sizes[1])),
            arrays((sizes[1], sizes[3])),
            arrays((sizes[3], sizes[2])),
            arrays((sizes[2], sizes[1])),
        )
    ),
    st.sampled_from([1.0, 4.0, 0.5]),
)
def test_gradcheck_of_linear_with_lora_in_float64(drawn, alpha):
    (rows, in_dim, out_dim, rank), x, a, b, weight = drawn
    layer = LinearWithLoRA(Linear(in_dim, out_dim, rng=0), rank=rank, alpha=alpha, rng=0).to(np.float64)
    layer.lora.A.data[...] = a
    layer.lora.B.data[...] = b  # non-zero: with B = 0 the gradient of A would be trivially 0
    layer.linear.weight.data[...] = weight
    inputs = [Tensor(x, requires_grad=True), layer.lora.A, layer.lora.B, layer.linear.weight, layer.linear.bias]
    assert autograd.gradcheck(lambda x, *params: layer(x), inputs, atol=1e-7, rtol=1e-6)


# ---- wrapping a model ----------------------------------------------------------------------------


def test_every_linear_is_wrapped_once_and_order_is_kept():
    model = GPTModel(TINY, rng=0)
    model.out_head = Linear(TINY["emb_dim"], 2, rng=0)  # a classification head, as chapter 6
    replace_linear_with_lora(model, rank=2, alpha=2, rng=0)
    replace_linear_with_lora(model, rank=2, alpha=2, rng=0)  # a second call does not stack adapters
    wrapped = [name for name, module in model.named_modules() if isinstance(module, LinearWithLoRA)]
    plain = [name for name, module in model.named_modules() if isinstance(module, Linear)]
    expected = [f"trf_blocks.{n}.{layer}" for n in range(2) for layer in
                ("att.W_query", "att.W_key", "att.W_value", "att.out_proj", "ff.layers.0", "ff.layers.2")]
    assert wrapped == expected + ["out_head"]
    assert plain == [name + ".linear" for name in wrapped]
    # A replaced child keeps its place: the feed-forward Sequential still runs Linear, GELU, Linear.
    layers = model.trf_blocks[0].ff.layers
    assert [type(module).__name__ for module in layers] == ["LinearWithLoRA", "GELU", "LinearWithLoRA"]


def test_a_freshly_wrapped_model_computes_exactly_what_it_did():
    model = GPTModel(TINY, rng=0).eval()
    ids = tiny_ids()
    before = model(ids).data.copy()
    replace_linear_with_lora(model, rank=4, alpha=8, rng=0)
    np.testing.assert_array_equal(model(ids).data, before)  # B = 0: the update is exactly zero
    randomize_lora(model)
    assert not np.allclose(model(ids).data, before)  # ... and the LoRA path is wired in


def test_only_lora_matrices_train_after_the_books_freezing():
    model = GPTModel(TINY, rng=0)
    freeze(model)
    replace_linear_with_lora(model, rank=2, alpha=2)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.endswith(("lora.A", "lora.B")) for name in trainable)
    assert len(trainable) == 2 * (6 * TINY["n_layers"] + 1)


def test_replace_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model must be a Module"):
        replace_linear_with_lora("gpt", 2, 2)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        replace_linear_with_lora(Sequential(Linear(2, 2)), 0, 2)


def test_gradcheck_of_a_lora_gpt_in_float64():
    model = GPTModel(TINY, rng=0)
    freeze(model)
    replace_linear_with_lora(model, rank=2, alpha=4, rng=0)
    model.to(np.float64)
    randomize_lora(model)
    ids = tiny_ids(num_tokens=6)
    params = [p for p in model.parameters() if p.requires_grad]
    assert autograd.gradcheck(
        lambda *p: F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]), params, max_elements=4, atol=1e-8, rtol=1e-5
    )


# ---- cost: frozen weights have no gradient and no optimizer state --------------------------------


def test_frozen_base_weights_get_no_gradient_buffers_and_no_adamw_state():
    model = GPTModel(TINY, rng=0)
    freeze(model)
    replace_linear_with_lora(model, rank=2, alpha=2, rng=0)
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad}
    frozen_arrays = {name: p.data for name, p in frozen.items()}
    snapshot = {name: p.data.copy() for name, p in frozen.items()}
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # all parameters, as the book
    trainable = model.num_parameters(trainable_only=True)
    assert optimizer._flat_groups[0].exp_avg.size == trainable  # moments only for A and B
    assert optimizer._flat_groups[0].data.size == trainable
    ids = tiny_ids()
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
        assert all(p.grad is None for p in frozen.values())
        optimizer.step()
    for name, p in frozen.items():
        assert p.data is frozen_arrays[name]  # not moved into the optimizer's buffer
        np.testing.assert_array_equal(p.data, snapshot[name])  # no decay either
    state = optimizer.state_dict()["state"]
    trainable_indices = [i for i, p in enumerate(model.parameters()) if p.requires_grad]
    assert sorted(state) == trainable_indices
    assert all(state[i]["step"] == 2 for i in trainable_indices)
    optimizer.load_state_dict(optimizer.state_dict())  # round trip of a state with frozen entries


def test_lora_alone_fits_a_batch_the_frozen_model_cannot_change():
    model = GPTModel(TINY, rng=0)
    freeze(model)
    replace_linear_with_lora(model, rank=4, alpha=8, rng=0)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    ids = tiny_ids(batch=4, num_tokens=8, seed=3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_adamw_refuses_a_gradient_for_a_parameter_frozen_at_construction():
    layer = Linear(3, 2, rng=0)
    layer.weight.requires_grad = False
    optimizer = AdamW(layer.parameters())
    layer.weight.requires_grad = True
    F.linear(Tensor(np.ones((1, 3), np.float32)), layer.weight, layer.bias).sum().backward()
    with pytest.raises(RuntimeError, match="requires_grad=False when AdamW was built"):
        optimizer.step()


# ---- merging -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie_weights", [False, True])
def test_merged_model_equals_the_lora_model_and_has_the_plain_keys(tie_weights):
    model = GPTModel(dict(TINY, tie_weights=tie_weights), rng=0).eval()
    keys = list(model.state_dict())
    embedding_before = model.tok_emb.weight.data.copy()
    freeze(model)
    replace_linear_with_lora(model, rank=3, alpha=6, rng=0)
    randomize_lora(model)
    ids = tiny_ids()
    unmerged = model(ids).data.copy()
    merged = merge_lora(model)
    assert merged is model
    assert not any(isinstance(module, (LinearWithLoRA, LoRALayer)) for module in model.modules())
    assert all(type(module) is Linear for name, module in model.named_modules() if name.endswith(("W_query", "out_head")))
    np.testing.assert_allclose(model(ids).data, unmerged, rtol=1e-5, atol=1e-5)  # float32 rounding
    assert list(model.state_dict()) == keys
    assert all(not p.requires_grad for p in model.parameters())  # merged weights stay frozen
    np.testing.assert_array_equal(model.tok_emb.weight.data, embedding_before)  # a tied embedding is untouched
    assert model.cfg.tie_weights is False


def test_a_merged_model_saves_and_loads_like_any_other(tmp_path):
    model = GPTModel(TINY, rng=0).eval()
    replace_linear_with_lora(model, rank=2, alpha=2, rng=0)
    randomize_lora(model)
    ids = tiny_ids()
    expected = model(ids).data.copy()
    merge_lora(model).save_pretrained(tmp_path / "merged")
    loaded = GPTModel.from_pretrained(tmp_path / "merged").eval()
    np.testing.assert_allclose(loaded(ids).data, expected, rtol=1e-5, atol=1e-5)


def test_merge_lora_of_a_single_layer_and_bad_input():
    wrapped = LinearWithLoRA(Linear(4, 3, rng=0), rank=2, alpha=1, rng=0)
    wrapped.lora.B.data[...] = 1.0
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32))
    merged = merge_lora(wrapped)
    assert type(merged) is Linear and merged.bias is wrapped.linear.bias
    np.testing.assert_allclose(merged(x).data, wrapped(x).data, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="model must be a Module"):
        merge_lora(None)


def test_cli_lora_options_freeze_and_wrap_or_fail_clearly():
    import argparse

    from minigpt.cli.lora_options import add_lora_arguments, apply_lora

    parser = argparse.ArgumentParser()
    add_lora_arguments(parser)
    model = GPTModel(TINY, rng=0)
    assert apply_lora("finetune x", model, parser.parse_args([])) is False
    assert model.num_parameters(trainable_only=True) == model.num_parameters()
    assert apply_lora("finetune x", model, parser.parse_args(["--lora", "2"]), rng=0) is True
    lora_layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
    assert len(lora_layers) == 6 * TINY["n_layers"] + 1 and all(m.alpha == 2.0 for m in lora_layers)
    assert all(name.endswith(("lora.A", "lora.B")) for name, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(SystemExit, match="--lora must be a rank >= 1, got 0"):
        apply_lora("finetune x", GPTModel(TINY, rng=0), parser.parse_args(["--lora", "0"]))
    with pytest.raises(SystemExit, match="give --lora RANK with it"):
        apply_lora("finetune x", GPTModel(TINY, rng=0), parser.parse_args(["--lora-alpha", "8"]))
