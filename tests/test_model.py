"""Tests of minigpt.model: GPTConfig and presets, parameter counts, the book's state-dict names,
initialisation, input checks, causality, dropout and its generator, weight tying, a whole-model
gradient check, overfitting one batch, and greedy generation.
"""

import math

import numpy as np
import pytest

import autograd
from autograd import Tensor
from autograd import functional as F
from minigpt.model import (
    GPT_CONFIG_124M,
    PRESETS,
    GPTConfig,
    GPTModel,
    count_parameters,
    generate_text_simple,
    get_config,
)
from minigpt.nn import Dropout

SMALL = dict(vocab_size=23, context_length=8, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0, qkv_bias=False)


def small_ids(batch=2, num_tokens=8, seed=0, vocab_size=23):
    return np.random.default_rng(seed).integers(0, vocab_size, (batch, num_tokens))


# ---- configuration -------------------------------------------------------------------------------


def test_config_from_the_books_dict_reads_like_the_dict():
    cfg = get_config(GPT_CONFIG_124M)
    assert cfg == GPTConfig() and cfg["emb_dim"] == 768 and cfg.tie_weights is False
    assert cfg.to_dict() == dict(GPT_CONFIG_124M, tie_weights=False)
    assert get_config(cfg) is cfg
    assert get_config("gpt2-small", drop_rate=0.0).drop_rate == 0.0


def test_presets_have_the_gpt2_sizes():
    sizes = {name: (PRESETS[name]["emb_dim"], PRESETS[name]["n_layers"], PRESETS[name]["n_heads"]) for name in PRESETS}
    assert sizes["gpt2-small"] == (768, 12, 12)
    assert sizes["gpt2-medium"] == (1024, 24, 16)
    assert sizes["gpt2-large"] == (1280, 36, 20)
    assert sizes["gpt2-xl"] == (1600, 48, 25)
    assert sizes["char"] == (128, 4, 4) and PRESETS["char"]["context_length"] == 64
    for name in PRESETS:
        get_config(name)  # every preset is valid
    # OpenAI's released sizes (Hugging Face's counts for gpt2 ... gpt2-xl).
    assert count_parameters("gpt2-small") == 124_439_808
    assert count_parameters("gpt2-medium") == 354_823_168
    assert count_parameters("gpt2-large") == 774_030_080
    assert count_parameters("gpt2-xl") == 1_557_611_200


def test_unknown_preset_and_bad_types():
    with pytest.raises(KeyError, match="unknown GPT preset 'gpt5'.*gpt2-small"):
        get_config("gpt5")
    with pytest.raises(TypeError, match="preset name, a config dict or a GPTConfig"):
        get_config(12)


def test_config_names_missing_and_unknown_keys():
    cfg = dict(GPT_CONFIG_124M)
    del cfg["n_heads"]
    cfg["n_head"] = 12
    with pytest.raises(KeyError, match=r"missing keys \['n_heads'\]; unknown keys \['n_head'\]"):
        GPTModel(cfg)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(emb_dim=100, n_heads=12), r"emb_dim \(100\) must be divisible by n_heads \(12\)"),
        (dict(n_layers=0), "n_layers must be a positive integer, got 0"),
        (dict(vocab_size=50257.0), "vocab_size must be a positive integer"),
        (dict(drop_rate=1.0), r"drop_rate must be a probability in \[0, 1\), got 1.0"),
        (dict(qkv_bias="yes"), "qkv_bias must be True or False"),
    ],
)
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        get_config(dict(GPT_CONFIG_124M, **change))


# ---- parameter count and names -------------------------------------------------------------------


def test_the_books_parameter_counts():
    # Book section 4.6: 163,009,536 in total; 124,412,160 with the output head shared.
    assert count_parameters(GPT_CONFIG_124M) == 163_009_536
    assert count_parameters(GPT_CONFIG_124M, count_head_as_tied=True) == 124_412_160
    assert count_parameters(dict(GPT_CONFIG_124M), count_head_as_tied=False) - count_parameters(
        dict(GPT_CONFIG_124M, tie_weights=True)
    ) == 50257 * 768


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("tie_weights", [False, True])
def test_count_from_shapes_equals_the_allocated_model(qkv_bias, tie_weights):
    cfg = dict(SMALL, qkv_bias=qkv_bias, tie_weights=tie_weights)
    model = GPTModel(cfg, rng=0)
    assert model.num_parameters() == count_parameters(cfg)
    untied = GPTModel(dict(cfg, tie_weights=False), rng=0).num_parameters()
    assert untied - count_parameters(cfg, count_head_as_tied=True) == 23 * 16


def test_state_dict_keys_are_the_books():
    model = GPTModel(dict(SMALL, n_layers=1), rng=0)
    block = [
        "att.W_query.weight", "att.W_key.weight", "att.W_value.weight", "att.out_proj.weight", "att.out_proj.bias",
        "ff.layers.0.weight", "ff.layers.0.bias", "ff.layers.2.weight", "ff.layers.2.bias",
        "norm1.scale", "norm1.shift", "norm2.scale", "norm2.shift",
    ]
    assert list(model.state_dict()) == (
        ["tok_emb.weight", "pos_emb.weight"]
        + [f"trf_blocks.0.{name}" for name in block]
        + ["final_norm.scale", "final_norm.shift", "out_head.weight"]
    )
    shapes = {name: value.shape for name, value in model.state_dict().items()}
    assert shapes["tok_emb.weight"] == (23, 16) and shapes["pos_emb.weight"] == (8, 16)
    assert shapes["trf_blocks.0.ff.layers.0.weight"] == (64, 16) and shapes["out_head.weight"] == (23, 16)
    biased = GPTModel(dict(SMALL, qkv_bias=True), rng=0).state_dict()
    assert "trf_blocks.1.att.W_value.bias" in biased


def test_a_book_style_state_dict_with_mask_buffers_loads_one_to_one():
    source, target = GPTModel(SMALL, rng=1), GPTModel(SMALL, rng=2)
    state = {name: value.copy() for name, value in source.state_dict().items()}
    for n in range(SMALL["n_layers"]):
        state[f"trf_blocks.{n}.att.mask"] = np.triu(np.ones((8, 8), dtype=np.float32), k=1)
    target.load_state_dict(state)
    ids = small_ids()
    np.testing.assert_array_equal(target.eval()(ids).data, source.eval()(ids).data)


def test_load_state_dict_errors_name_the_keys():
    model = GPTModel(SMALL, rng=0)
    state = dict(model.state_dict())
    del state["trf_blocks.1.norm2.shift"]
    with pytest.raises(KeyError, match=r"missing keys: trf_blocks\.1\.norm2\.shift"):
        model.load_state_dict(state)
    state = dict(model.state_dict(), **{"trf_blocks.0.att.W_query.bias": np.zeros(16)})
    with pytest.raises(KeyError, match=r"unexpected keys: trf_blocks\.0\.att\.W_query\.bias"):
        model.load_state_dict(state)
    state = dict(model.state_dict(), **{"pos_emb.weight": np.zeros((16, 16))})
    with pytest.raises(ValueError, match=r"pos_emb\.weight: checkpoint has shape \(16, 16\), model has \(8, 16\)"):
        model.load_state_dict(state)


# ---- initialisation ------------------------------------------------------------------------------


def test_initialisation_is_seedable_and_gpt2_style():
    cfg = dict(SMALL, emb_dim=64, vocab_size=500)
    first, second = GPTModel(cfg, rng=5, init="gpt2"), GPTModel(cfg, rng=autograd.Generator().manual_seed(5), init="gpt2")
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(first.tok_emb.weight.data, GPTModel(cfg, rng=6, init="gpt2").tok_emb.weight.data)
    assert abs(first.tok_emb.weight.data.std() - 0.02) < 0.002
    # Residual projections: 0.02 / sqrt(2 * n_layers) (GPT-2 paper, section 2.3).
    out_proj_std = np.concatenate([b.ff.layers[2].weight.data.ravel() for b in first.trf_blocks]).std()
    assert abs(out_proj_std - 0.02 / math.sqrt(4)) < 0.001
    assert all(p.dtype == np.float32 for p in first.parameters())


# ---- forward -------------------------------------------------------------------------------------


def test_forward_gives_float32_logits_of_the_books_shape():
    model = GPTModel(SMALL, rng=0)
    logits = model(small_ids(batch=3, num_tokens=5))
    assert logits.shape == (3, 5, 23) and logits.dtype == np.float32
    assert model(Tensor(small_ids())).shape == (2, 8, 23)  # a Tensor of ids works too
    assert model.to(np.float64)(small_ids()).dtype == np.float64


@pytest.mark.parametrize(
    "ids, error, message",
    [
        (np.zeros((1, 9), dtype=np.int64), ValueError, "got 9 tokens, more than context_length=8"),
        (np.array([[1, 23]]), ValueError, r"token id 23 is outside the vocabulary \[0, 23\)"),
        (np.array([[1, -1]]), ValueError, r"token id -1 is outside the vocabulary \[0, 23\)"),
        (np.array([[1.0, 2.0]]), TypeError, "token ids must be integers, got dtype float64"),
        (np.array([1, 2]), ValueError, r"shape \(batch, num_tokens\), got shape \(2,\); for one sequence use ids\[None, :\]"),
        (np.zeros((1, 0), dtype=np.int64), ValueError, "no tokens"),
    ],
)
def test_bad_token_ids_get_clear_errors(ids, error, message):
    with pytest.raises(error, match=message):
        GPTModel(SMALL, rng=0)(ids)


def test_causality_later_tokens_do_not_change_earlier_logits():
    model = GPTModel(SMALL, rng=0)
    ids = small_ids()
    changed = ids.copy()
    changed[:, 5:] = (changed[:, 5:] + 7) % 23
    before, after = model(ids).data, model(changed).data
    np.testing.assert_array_equal(before[:, :5], after[:, :5])
    assert not np.allclose(before[:, 5:], after[:, 5:])


# ---- dropout -------------------------------------------------------------------------------------


def test_eval_turns_every_dropout_off():
    model = GPTModel(dict(SMALL, drop_rate=0.5), rng=0)
    ids = small_ids()
    assert not np.array_equal(model(ids).data, model(ids).data)  # training mode: new masks each time
    model.eval()
    np.testing.assert_array_equal(model(ids).data, model(ids).data)
    assert not any(module.training for module in model.modules())


def test_one_shared_dropout_generator_whose_state_resumes_exactly():
    model = GPTModel(dict(SMALL, drop_rate=0.2), rng=0, dropout_rng=11)
    dropouts = [module for module in model.modules() if isinstance(module, Dropout)]
    assert len(dropouts) == 1 + 2 * SMALL["n_layers"]  # drop_emb; att.dropout and drop_shortcut per block
    assert all(module.rng is model.dropout_rng for module in dropouts)
    ids = small_ids()
    saved = model.dropout_rng.bit_generator.state
    first = model(ids).data
    model.dropout_rng.bit_generator.state = saved
    np.testing.assert_array_equal(model(ids).data, first)
    # The same seeds give the same masks in a new model; assigning a generator re-wires them all.
    np.testing.assert_array_equal(GPTModel(dict(SMALL, drop_rate=0.2), rng=0, dropout_rng=11)(ids).data, first)
    model.dropout_rng = autograd.Generator().manual_seed(11)
    assert all(module.rng is model.dropout_rng for module in dropouts)
    np.testing.assert_array_equal(model(ids).data, first)


# ---- weight tying --------------------------------------------------------------------------------


def test_tied_head_shares_the_embedding_and_sums_both_gradients():
    tied = GPTModel(dict(SMALL, tie_weights=True), rng=0)
    assert tied.out_head.weight is tied.tok_emb.weight
    assert "out_head.weight" in tied.state_dict() and "out_head.weight" not in dict(tied.named_parameters())
    untied = GPTModel(SMALL, rng=1)
    untied.load_state_dict(tied.state_dict())
    ids = small_ids()
    for model in (tied, untied):
        F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
    np.testing.assert_allclose(tied.tok_emb.weight.grad, untied.tok_emb.weight.grad + untied.out_head.weight.grad, rtol=1e-5, atol=1e-7)
    tied.to(np.float64)
    assert tied.out_head.weight is tied.tok_emb.weight and tied.out_head.weight.dtype == np.float64


# ---- gradients and learning ----------------------------------------------------------------------


def test_gradcheck_of_a_whole_tiny_gpt_in_float64():
    cfg = dict(vocab_size=11, context_length=6, emb_dim=8, n_heads=2, n_layers=2, drop_rate=0.0, qkv_bias=True)
    model = GPTModel(cfg, rng=0).to(np.float64)
    rng = np.random.default_rng(1)
    for parameter in model.parameters():  # larger than the 0.02 init, biases and norms non-trivial
        parameter.data[...] = rng.standard_normal(parameter.shape) * 0.3 + (1.0 if parameter.ndim == 1 else 0.0) * 0.1
    ids = rng.integers(0, 11, (2, 6))
    params = list(model.parameters())
    autograd.gradcheck(lambda *p: model(ids), params, max_elements=6, atol=1e-6, rtol=1e-5)
    autograd.gradcheck(lambda *p: F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]), params, max_elements=6, atol=1e-7, rtol=1e-5)


def test_a_tiny_gpt_overfits_one_batch_with_plain_gradient_descent():
    model = GPTModel(dict(SMALL, emb_dim=32), rng=0)
    ids = np.random.default_rng(1).integers(0, 23, (4, 9))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    losses = []
    for _ in range(80):
        model.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        losses.append(loss.item())
        for parameter in model.parameters():
            parameter.data -= np.float32(0.3) * parameter.grad  # theta <- theta - lr * gradient
    assert abs(losses[0] - math.log(23)) < 0.2  # starts near uniform guessing
    assert losses[-1] < 0.2, losses[::10]


# ---- generation ----------------------------------------------------------------------------------


def test_generate_text_simple_is_greedy_and_restores_training_mode():
    model = GPTModel(dict(SMALL, drop_rate=0.3), rng=0)
    prompt = np.array([[1, 2, 3]])
    out = generate_text_simple(model, prompt, max_new_tokens=10, context_size=SMALL["context_length"])
    assert out.shape == (1, 13) and (out[:, :3] == prompt).all()
    assert model.training  # switched to eval while generating, then back
    model.eval()
    for position in range(3, 13):
        context = out[:, max(0, position - 8):position]
        assert out[0, position] == model(context).data[0, -1].argmax()


def test_the_default_init_is_pytorchs_for_an_untied_head_and_gpt2s_for_a_tied_one():
    # The book's configs (untied head) get PyTorch's layer init; a tied head scoring with N(0, 1)
    # embeddings would start near a loss of 80, so tied configs get GPT-2's scheme.
    small = dict(vocab_size=64, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)
    for tie, expected in ((False, "pytorch"), (True, "gpt2")):
        cfg = dict(small, tie_weights=tie)
        autograd.manual_seed(5)
        default = GPTModel(cfg)
        autograd.manual_seed(5)
        explicit = GPTModel(cfg, init=expected)
        for (name, a), (_, b) in zip(default.state_dict().items(), explicit.state_dict().items()):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    autograd.manual_seed(5)
    tied = GPTModel(dict(small, tie_weights=True))
    autograd.manual_seed(5)
    tied_pytorch = GPTModel(dict(small, tie_weights=True), init="pytorch")
    assert not np.array_equal(np.asarray(tied.tok_emb.weight.data), np.asarray(tied_pytorch.tok_emb.weight.data))
