"""Llama 3 and Qwen3 (issue 23): the layers, the models, their KV cache, and Hugging Face parity.

- Parity: logits, loss and every parameter's gradient equal Hugging Face transformers'
  `LlamaForCausalLM` and `Qwen3ForCausalLM` (small random checkpoints, float64) to 1e-6 relative
  (fixtures made once by scripts/make_llama_qwen_fixtures.py; the Qwen3 one is sharded). The
  remaining ~3e-7 is Hugging Face's float32 RoPE angles, rounded differently.
- `from_pretrained`: a single file, a sharded index, tied heads, and the errors of a bad folder.
- GroupedQueryAttention equals the book's formulation with primitive ops (repeat_interleave of
  the kv heads, masked_fill, softmax); its gradient against finite differences in float64.
- RoPE tables: Llama 3's frequency scaling against its formula; relative positions only.
- The KV cache (storing the kv heads only) gives the logits of the full pass; left-padded batches
  give each row's own result; causality; a tiny model overfits one batch.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck
from autograd import functional as F
from minigpt import Llama3Model, Qwen3Model
from minigpt.generate import generate
from minigpt.hf_llama import config_from_hf, hf_to_minigpt_name
from minigpt.llama3 import LLAMA32_CONFIG_1B, get_llama3_config
from minigpt.nn import GroupedQueryAttention, RMSNorm, compute_rope_params
from minigpt.qwen3 import QWEN_CONFIG_06_B

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = [(Llama3Model, "llama3-tiny"), (Qwen3Model, "qwen3-tiny-sharded")]
TINY = dict(vocab_size=97, context_length=24, emb_dim=32, n_heads=4, n_layers=2, hidden_dim=48, n_kv_groups=2,
            rope_base=10_000.0)


def _tiny(cls, **changes):
    cfg = dict(TINY, **changes)
    if cls is Qwen3Model:
        cfg = dict(dict(head_dim=16, qk_norm=True), **cfg)
    return cls(cfg, rng=0)


# ------------------------------------------------------------------------------------------------
# Hugging Face parity
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, name", CASES)
def test_logits_loss_and_every_gradient_equal_hugging_face(cls, name):
    folder = os.path.join(FIXTURES, name)
    expected = np.load(os.path.join(folder, "expected.npz"))
    model = cls.from_pretrained(folder, dtype=np.float64)
    ids = expected["input_ids"]
    logits = model(ids)
    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits.data, expected["logits"], rtol=0, atol=1e-6 * np.abs(expected["logits"]).max())
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    assert abs(loss.item() - float(expected["loss"])) <= 1e-6 * abs(float(expected["loss"]))
    loss.backward()
    parameters = dict(model.named_parameters())
    norm = "scale" if cls is Qwen3Model else "weight"
    grads = [key for key in expected.files if key.startswith("grad.")]
    assert {hf_to_minigpt_name(key[5:], norm) for key in grads} == set(parameters)  # every parameter compared
    for key in grads:
        want, got = expected[key], parameters[hf_to_minigpt_name(key[5:], norm)].grad
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max(), err_msg=key)


def test_the_fixtures_cover_sharding_tying_scaling_and_qk_norm():
    qwen = os.path.join(FIXTURES, "qwen3-tiny-sharded")
    with open(os.path.join(qwen, "model.safetensors.index.json"), encoding="utf-8") as file:
        assert len(set(json.load(file)["weight_map"].values())) > 1
    model = Qwen3Model.from_pretrained(qwen)
    assert model.out_head.weight is model.tok_emb.weight and model.trf_blocks[0].att.q_norm is not None
    assert model.cfg["head_dim"] == 16 != model.cfg["emb_dim"] // model.cfg["n_heads"]
    llama = Llama3Model.from_pretrained(os.path.join(FIXTURES, "llama3-tiny"))
    assert llama.out_head.weight is not llama.tok_emb.weight
    assert llama.cfg["rope_freq"]["original_context_length"] == 8192 and llama.tok_emb.weight.dtype == np.float32


def test_hub_style_configs_with_rope_theta_and_rope_scaling_at_the_top_level():
    # The layout of meta-llama/Llama-3.2-1B's config.json (transformers 4.x).
    hub = {"model_type": "llama", "vocab_size": 128256, "max_position_embeddings": 131072, "hidden_size": 2048,
           "num_attention_heads": 32, "num_hidden_layers": 16, "intermediate_size": 8192, "num_key_value_heads": 8,
           "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": True, "head_dim": 64,
           "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
    cfg = config_from_hf(hub)
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "hidden_dim", "n_kv_groups", "rope_base"):
        assert cfg[key] == LLAMA32_CONFIG_1B[key], key
    assert cfg["rope_freq"] == LLAMA32_CONFIG_1B["rope_freq"] and cfg["tie_weights"]
    with pytest.raises(ValueError, match="model_type 'llama', expected 'qwen3'"):
        config_from_hf(hub, "Qwen3Model")
    with pytest.raises(ValueError, match="attention_bias"):
        config_from_hf(dict(hub, attention_bias=True))


def test_bad_checkpoint_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Llama3Model.from_pretrained(tmp_path)
    folder = tmp_path / "broken"
    shutil.copytree(os.path.join(FIXTURES, "qwen3-tiny-sharded"), folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.9.mlp.extra.weight"] = index["weight_map"].pop("model.norm.weight")
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError) as error:
        Qwen3Model.from_pretrained(folder)
    assert "missing tensor for final_norm.scale" in str(error.value)
    with pytest.raises(ValueError, match="model_type 'qwen3'"):
        Llama3Model.from_pretrained(os.path.join(FIXTURES, "qwen3-tiny-sharded"))


# ------------------------------------------------------------------------------------------------
# The layers against the book's formulation
# ------------------------------------------------------------------------------------------------


def _book_gqa(att, x, cos, sin):
    """The book's GroupedQueryAttention.forward (llama3.py / qwen3.py) in primitive ops."""
    b, t, _ = x.shape
    q = att.W_query(x).view(b, t, att.num_heads, att.head_dim).transpose(1, 2)
    k = att.W_key(x).view(b, t, att.num_kv_groups, att.head_dim).transpose(1, 2)
    v = att.W_value(x).view(b, t, att.num_kv_groups, att.head_dim).transpose(1, 2)
    if att.q_norm is not None:
        q = q / ((q * q).mean(dim=-1, keepdim=True) + 1e-6).sqrt() * att.q_norm.scale
        k = k / ((k * k).mean(dim=-1, keepdim=True) + 1e-6).sqrt() * att.k_norm.scale

    def rope(z):
        half = att.head_dim // 2
        rotated = autograd.cat([-z[..., half:], z[..., :half]], dim=-1)
        return z * Tensor(cos.data[:t]) + rotated * Tensor(sin.data[:t])

    q, k = rope(q), rope(k)
    repeat = np.repeat(np.arange(att.num_kv_groups), att.group_size)  # repeat_interleave(group_size, dim=1)
    k, v = k[:, repeat], v[:, repeat]
    scores = (q @ k.transpose(2, 3)).masked_fill(np.triu(np.ones((t, t), bool), 1), -np.inf)
    weights = F.softmax(scores / att.head_dim**0.5, dim=-1)
    return att.out_proj((weights @ v).transpose(1, 2).reshape(b, t, att.d_out))


@pytest.mark.parametrize("qk_norm, head_dim", [(False, None), (True, 6)])
@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_grouped_query_attention_equals_the_books_formulation(qk_norm, head_dim, mode):
    att = GroupedQueryAttention(d_in=12, num_heads=6, num_kv_groups=2, head_dim=head_dim, qk_norm=qk_norm, rng=0).to(np.float64)
    if qk_norm:
        att.q_norm.scale.data[:] = np.linspace(0.5, 1.5, 6)
        att.k_norm.scale.data[:] = np.linspace(1.5, 0.5, 6)
    cos, sin = compute_rope_params(att.head_dim, 10_000, 16, dtype=np.float64)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 5, 12)), requires_grad=True)
    with autograd.kernels(mode):
        np.testing.assert_allclose(att(x, cos, sin).data, _book_gqa(att, x, cos, sin).data, rtol=1e-12, atol=1e-12)
        assert gradcheck(lambda x: att(x, cos, sin), [x])
    assert att.W_key.weight.shape == (2 * att.head_dim, 12)  # only the kv heads are projected


def test_rope_tables_and_llama3_frequency_scaling():
    cos, sin = compute_rope_params(64, 500_000.0, 16, LLAMA32_CONFIG_1B["rope_freq"], dtype=np.float64)
    inv_freq = 500_000.0 ** -(np.arange(0, 64, 2) / 64)
    wavelength = 2 * np.pi / inv_freq
    smooth = (8192 / wavelength - 1.0) / (4.0 - 1.0)
    expected = np.where(wavelength < 8192 / 4, inv_freq,
                        np.where(wavelength > 8192, inv_freq / 32, (1 - smooth) * inv_freq / 32 + smooth * inv_freq))
    angles = np.outer(np.arange(16), expected)
    np.testing.assert_allclose(cos.data, np.cos(np.concatenate([angles, angles], 1)), rtol=1e-12, atol=1e-12)
    assert (wavelength > 8192).any() and ((wavelength > 2048) & (wavelength < 8192)).any()  # all three bands
    # Relative positions only: q at p and k at p' score the same for the same p - p'.
    rng = np.random.default_rng(0)
    q, k = (Tensor(rng.standard_normal((1, 1, 1, 64))) for _ in range(2))
    def score(p, p2):
        return float((F.apply_rope(q, cos, sin, offset=p).data * F.apply_rope(k, cos, sin, offset=p2).data).sum())
    assert score(5, 2) == pytest.approx(score(13, 10), rel=1e-9) and score(5, 2) != pytest.approx(score(5, 3), rel=1e-3)


def test_rms_norm_module_has_pytorchs_signature():
    norm = RMSNorm(8, eps=1e-5)
    assert norm.weight.shape == (8,) and list(norm.state_dict()) == ["weight"]
    assert RMSNorm((2, 4), elementwise_affine=False).weight is None
    x = autograd.tensor(np.random.default_rng(0).standard_normal((3, 8)), dtype=np.float32)
    ms = (x.data**2).mean(-1, keepdims=True)
    np.testing.assert_allclose(norm(x).data, x.data / np.sqrt(ms + 1e-5), rtol=1e-6)
    with pytest.raises(ValueError, match="normalized_shape"):
        RMSNorm(0)


# ------------------------------------------------------------------------------------------------
# The models: cache, padding, causality, training, configs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Llama3Model, Qwen3Model])
def test_the_kv_cache_gives_the_full_pass_logits_and_stores_only_kv_heads(cls):
    model = _tiny(cls).to(np.float64)
    ids = np.random.default_rng(0).integers(0, 97, (2, 12))
    full = model(ids).data
    with autograd.no_grad():
        model.reset_kv_cache()
        parts = [model(ids[:, :5], use_cache=True), model(ids[:, 5:6], use_cache=True), model(ids[:, 6:], use_cache=True)]
    np.testing.assert_allclose(np.concatenate([p.data for p in parts], axis=1), full, rtol=1e-10, atol=1e-10)
    att = model.trf_blocks[0].att
    assert att.cache_k.shape == (2, 2, 24, att.head_dim)  # (B, n_kv_groups, context_length, head_dim)
    assert (generate(model, ids[:, :4], 6, 24, temperature=0.0) == generate(model, ids[:, :4], 6, 24, temperature=0.0,
                                                                           use_cache=False)).all()


@pytest.mark.parametrize("cls", [Llama3Model, Qwen3Model])
def test_prompts_of_different_lengths_give_each_rows_own_tokens(cls):
    model = _tiny(cls)
    prompts = [np.array([5, 6, 7, 8, 9]), np.array([3, 4])]
    batch = generate(model, prompts, 5, 24, temperature=0.0)
    for prompt, row in zip(prompts, batch):
        np.testing.assert_array_equal(row, generate(model, prompt[None], 5, 24, temperature=0.0)[0])


@pytest.mark.parametrize("cls", [Llama3Model, Qwen3Model])
def test_causal_and_past_the_context_generation_crops(cls):
    model = _tiny(cls)
    ids = np.random.default_rng(1).integers(0, 97, (1, 10))
    changed = ids.copy()
    changed[0, 7:] = (changed[0, 7:] + 1) % 97
    np.testing.assert_array_equal(model(ids).data[:, :7], model(changed).data[:, :7])
    long = generate(model, ids, 20, 24, temperature=0.0)  # beyond context_length: the cache is rebuilt
    assert long.shape == (1, 30) and (long == generate(model, ids, 20, 24, temperature=0.0, use_cache=False)).all()


@pytest.mark.parametrize("cls", [Llama3Model, Qwen3Model])
def test_a_tiny_model_overfits_one_batch(cls):
    from minigpt.optim import AdamW

    model = _tiny(cls)
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    ids = np.random.default_rng(2).integers(0, 97, (2, 17))
    losses = []
    for _ in range(30):
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 4.3 and losses[-1] < 0.5 * losses[0]


def test_configs_keep_the_books_keys_and_bad_ones_are_named():
    assert set(LLAMA32_CONFIG_1B) == {"vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "hidden_dim",
                                      "n_kv_groups", "rope_base", "dtype", "rope_freq"}
    assert QWEN_CONFIG_06_B["head_dim"] == 128 and QWEN_CONFIG_06_B["qk_norm"] is True
    with pytest.raises(KeyError, match="missing keys \\['head_dim', 'qk_norm'\\]"):
        Qwen3Model(TINY)
    with pytest.raises(ValueError, match="divisible by n_kv_groups"):
        Llama3Model(dict(TINY, n_kv_groups=3))
    with pytest.raises(KeyError, match="unknown preset"):
        get_llama3_config("llama3-huge")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        _tiny(Llama3Model)(np.array([[97]]))
    model = Llama3Model("llama3-tiny", rng=0)
    assert model.out_head.weight is model.tok_emb.weight and "cos" not in model.state_dict()
