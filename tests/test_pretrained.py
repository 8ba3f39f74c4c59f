"""Exact parity with GPT-2: load a checkpoint written by Hugging Face transformers and compare
logits, loss and every parameter's gradient with the values transformers computed.

The fixture `tests/fixtures/gpt2-tiny/` (2 layers, 4 heads, 64 wide, vocabulary 512, context 32)
holds the float32 checkpoint and, in float64, GPT2LMHeadModel's logits, loss and gradients for a
batch of 2 x 16 token ids (see its README). Tolerances, stated per check:

- float64: logits within 1e-9 absolute; the loss within 1e-12; every gradient within 1e-6 relative
  to the largest entry of the reference gradient of that tensor, except the key block of
  c_attn.bias, whose exact gradient is 0 (softmax ignores a shift common to all of a query's
  scores): it is compared with an absolute tolerance of 1e-12.
- float32: logits within 1e-4 absolute (float32 rounding through two blocks).
"""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from autograd import functional as F
from minigpt.model import GPTModel
from minigpt.pretrained import config_from_hf, gpt2_to_minigpt, load_pretrained, minigpt_to_gpt2

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "gpt2-tiny")
EMB_DIM = 64


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def hf_arrays():
    with safe_open(os.path.join(FIXTURE, "model.safetensors"), framework="np") as checkpoint:
        return {name: checkpoint.get_tensor(name) for name in checkpoint.keys()}


def loss_of(model, input_ids):
    """Mean cross-entropy of predicting input_ids[:, 1:] from logits[:, :-1] (as the fixture)."""
    logits = model(input_ids)
    return logits, F.cross_entropy(logits[:, :-1], input_ids[:, 1:])


def hf_gradients(model):
    """Every parameter's gradient under its Hugging Face name and layout."""
    grads = {name: parameter.grad for name, parameter in model.named_parameters(remove_duplicate=False)}
    return minigpt_to_gpt2(grads, model.cfg)


# ---- parity ----------------------------------------------------------------------------------


def test_float64_logits_loss_and_every_gradient_match_transformers(expected):
    model = GPTModel.from_pretrained(FIXTURE, dtype=np.float64)
    logits, loss = loss_of(model, expected["input_ids"])
    assert logits.dtype == np.float64
    assert np.abs(logits.data - expected["logits"]).max() < 1e-9
    assert abs(loss.item() - float(expected["loss"])) < 1e-12
    loss.backward()
    grads = hf_gradients(model)
    assert sorted("grad." + name for name in grads) == sorted(name for name in expected if name.startswith("grad."))
    for name, grad in grads.items():
        reference = expected["grad." + name]
        if name.endswith("c_attn.bias"):
            key_block = slice(EMB_DIM, 2 * EMB_DIM)
            assert np.abs(grad[key_block]).max() < 1e-12, name  # exactly 0 in exact arithmetic
            assert np.abs(reference[key_block]).max() < 1e-12, name
            grad, reference = np.delete(grad, np.s_[key_block]), np.delete(reference, np.s_[key_block])
        relative = np.abs(grad - reference).max() / np.abs(reference).max()
        assert relative < 1e-6, f"{name}: relative error {relative:.3g}"


def test_float32_logits_match_transformers(expected):
    model = GPTModel.from_pretrained(FIXTURE)
    logits, loss = loss_of(model, expected["input_ids"])
    assert logits.dtype == np.float32
    assert np.abs(logits.data - expected["logits"]).max() < 1e-4
    assert abs(loss.item() - float(expected["loss"])) < 1e-5


# ---- the loader ------------------------------------------------------------------------------


def test_loaded_model_has_gpt2s_config_tied_head_and_eval_mode():
    model = GPTModel.from_pretrained(os.path.join(FIXTURE, "model.safetensors"))  # the file itself
    cfg = model.cfg
    assert (cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_heads, cfg.n_layers) == (512, 32, 64, 4, 2)
    assert cfg.qkv_bias and cfg.tie_weights and cfg.drop_rate == 0.0
    assert model.out_head.weight is model.tok_emb.weight
    assert not model.training
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_conversion_round_trips_to_the_checkpoints_arrays(hf_arrays):
    model = load_pretrained(FIXTURE)
    exported = minigpt_to_gpt2(model.state_dict(), model.cfg)
    assert sorted(exported) == sorted(hf_arrays)
    for name, array in hf_arrays.items():
        np.testing.assert_array_equal(exported[name], array, err_msg=name)
    converted = gpt2_to_minigpt(hf_arrays, model.cfg)
    # The layout transposes Conv1D weights and splits c_attn into query, key and value.
    np.testing.assert_array_equal(
        converted["trf_blocks.1.att.W_key.weight"], hf_arrays["transformer.h.1.attn.c_attn.weight"][:, 64:128].T
    )
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(converted[name], value, err_msg=name)


def write_checkpoint(directory, arrays, with_config=True):
    os.makedirs(directory, exist_ok=True)
    save_file(arrays, os.path.join(directory, "model.safetensors"))
    if with_config:
        shutil.copy(os.path.join(FIXTURE, "config.json"), directory)
    return str(directory)


def test_bare_hub_names_and_mask_buffers_load_the_same(tmp_path, hf_arrays, expected):
    # The hub's original files: no `transformer.` prefix, plus the attention-mask buffers.
    bare = {name.removeprefix("transformer."): array for name, array in hf_arrays.items()}
    for n in range(2):
        bare[f"h.{n}.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), dtype=np.float32))
        bare[f"h.{n}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    model = GPTModel.from_pretrained(write_checkpoint(tmp_path / "bare", bare), dtype=np.float64)
    assert np.abs(model(expected["input_ids"]).data - expected["logits"]).max() < 1e-9


def test_without_config_json_the_config_comes_from_the_shapes(tmp_path, hf_arrays, expected):
    directory = write_checkpoint(tmp_path / "noconfig", hf_arrays, with_config=False)
    # The head count is not in any shape: released GPT-2s have head size 64, this one 16.
    model = load_pretrained(directory, dtype=np.float64, n_heads=4, drop_rate=0.0)
    assert model.cfg.n_layers == 2 and model.cfg.tie_weights
    assert np.abs(model(expected["input_ids"]).data - expected["logits"]).max() < 1e-9


def test_a_stored_untied_head_is_loaded_separately(tmp_path, hf_arrays):
    arrays = dict(hf_arrays, **{"lm_head.weight": hf_arrays["transformer.wte.weight"] * 2})
    directory = write_checkpoint(tmp_path / "untied", arrays)
    with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
        load_pretrained(directory)
    model = load_pretrained(directory, tie_weights=False)
    assert model.out_head.weight is not model.tok_emb.weight
    np.testing.assert_array_equal(model.out_head.weight.data, arrays["lm_head.weight"])


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop", r"missing tensors: h\.1\.mlp\.c_fc\.bias"),
        ("extra", r"unexpected tensors: h\.0\.attn\.rotary\.weight"),
        ("reshape", r"mis-shaped tensors: wpe\.weight: expected shape \(32, 64\), found \(16, 64\)"),
    ],
)
def test_checkpoint_problems_name_the_tensor(tmp_path, hf_arrays, change, message):
    arrays = dict(hf_arrays)
    if change == "drop":
        del arrays["transformer.h.1.mlp.c_fc.bias"]
    elif change == "extra":
        arrays["transformer.h.0.attn.rotary.weight"] = np.zeros(3, dtype=np.float32)
    else:
        arrays["transformer.wpe.weight"] = arrays["transformer.wpe.weight"][:16].copy()
    with pytest.raises(ValueError, match=message):
        load_pretrained(write_checkpoint(tmp_path / change, arrays))


def test_missing_checkpoint_and_unsupported_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_pretrained(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="without model.safetensors"):
        load_pretrained(tmp_path)
    with open(os.path.join(FIXTURE, "config.json")) as file:
        hf_config = json.load(file)
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        config_from_hf(dict(hf_config, activation_function="relu"))
    with pytest.raises(ValueError, match="layer_norm_epsilon"):
        config_from_hf(dict(hf_config, layer_norm_epsilon=1e-6))
