"""Chapter 4 bonus, "KV cache" (ch04/03_kv-cache), in the book's style on minigpt.

The bonus adds `use_cache` to MultiHeadAttention, TransformerBlock and GPTModel, a
`reset_cache()` / `reset_kv_cache()` pair, position tracking (`ptr_current_pos`, `current_pos`)
and `generate_text_simple_cached`; its tests check that cached and uncached generation give the
same tokens, that generating past the context length works, and that a long prompt can be fed in
chunks. minigpt's cache is preallocated per layer (the bonus's "optimized" variant) rather than
grown by concatenation. The book runs GPT_CONFIG_124M; these tests keep its vocabulary and
tokenizer and shrink width and depth, so the file runs in seconds.
"""

import numpy as np

import autograd as torch
from minigpt import tokenizer as tiktoken
from minigpt.generate import generate_text_simple, generate_text_simple_cached
from minigpt.model import GPT_CONFIG_124M, GPTModel

SMALL_CONFIG = {**GPT_CONFIG_124M, "context_length": 64, "emb_dim": 48, "n_heads": 4, "n_layers": 2}


def book_model(cfg=SMALL_CONFIG):
    model = GPTModel(cfg, rng=123)  # the book: torch.manual_seed(123); GPTModel(GPT_CONFIG_124M)
    model.eval()  # disable dropout
    return model


def encoded_prompt():
    tokenizer = tiktoken.get_encoding("gpt2")
    encoded = tokenizer.encode("Hello, I am")
    return torch.tensor(encoded).unsqueeze(0)


def test_the_prompt_of_the_bonus_script():
    encoded_tensor = encoded_prompt()
    assert encoded_tensor.tolist() == [[15496, 11, 314, 716]]
    assert encoded_tensor.shape == (1, 4)


def test_gpt_with_kv_cache_main_generates_as_gpt_ch04():
    model = book_model()
    encoded_tensor = encoded_prompt()
    token_ids = generate_text_simple_cached(model=model, idx=encoded_tensor, max_new_tokens=30)
    assert token_ids.shape == (1, 34)  # "Output length": 4 + 30 (the bonus's tests.py generates 30)
    # The bonus README: "both implementations produce exactly the same text".
    baseline = generate_text_simple(model=model, idx=encoded_tensor, max_new_tokens=30,
                                    context_size=SMALL_CONFIG["context_length"])
    assert np.array_equal(token_ids, baseline)
    tokenizer = tiktoken.get_encoding("gpt2")
    assert tokenizer.decode(token_ids[0].tolist()).startswith("Hello, I am")


def test_multi_head_attention_cache_and_reset_cache():
    model = book_model()
    att = model.trf_blocks[0].att
    x = torch.tensor(np.random.default_rng(0).standard_normal((1, 3, 48)), dtype=np.float32)
    with torch.no_grad():
        model.reset_kv_cache()
        assert att.cache_k is None and att.ptr_current_pos == 0
        att(x, use_cache=True)  # three tokens
        att(x[:, :1], use_cache=True)  # one more
    assert att.ptr_current_pos == 4
    # Preallocated (the bonus's optimized variant): (b, num_heads, max_seq_len, head_dim).
    assert att.cache_k.shape == (1, 4, SMALL_CONFIG["context_length"], 12)
    np.testing.assert_allclose(att.cache_k[:, :, 3], att.cache_k[:, :, 0], atol=1e-6)  # the same token twice
    att.reset_cache()
    assert att.cache_k is None and att.cache_v is None and att.ptr_current_pos == 0


def test_gpt_model_current_pos_and_reset_kv_cache():
    model = book_model()
    with torch.no_grad():
        model.reset_kv_cache()
        logits = model(encoded_prompt(), use_cache=True)
        assert model.current_pos == 4 and logits.shape == (1, 4, 50257)
        next_idx = logits[:, -1].data.argmax(axis=-1)[:, None]  # logits[:, -1].argmax(dim=-1, keepdim=True)
        logits = model(next_idx, use_cache=True)  # feed the model only the new token
        assert model.current_pos == 5 and logits.shape == (1, 1, 50257)
    model.reset_kv_cache()
    assert model.current_pos == 0
    assert all(block.att.ptr_current_pos == 0 for block in model.trf_blocks)


def test_cached_logits_equal_uncached_logits():
    model = book_model()
    idx = encoded_prompt()
    with torch.no_grad():
        full = model(idx)
        model.reset_kv_cache()
        first = model(idx[:, :2], use_cache=True)
        rest = model(idx[:, 2:], use_cache=True)
    np.testing.assert_allclose(torch.cat([first, rest], dim=1).data, full.data, atol=2e-5)


def test_context_overflow_bug():
    # The bonus's tests.py: context_length 10, 5 input tokens, 10 new ones (15 > 10) must not crash
    # reading pos_emb[10]; here the cache is rebuilt over the last 10 tokens, as without a cache.
    model = book_model({**SMALL_CONFIG, "context_length": 10})
    input_tokens = torch.tensor(np.random.default_rng(123).integers(0, 50257, (1, 5)))
    token_ids = generate_text_simple_cached(model=model, idx=input_tokens, max_new_tokens=10, context_size=10,
                                            use_cache=True)
    assert token_ids.shape == (1, 15)
    uncached = generate_text_simple(model, input_tokens, max_new_tokens=10, context_size=10)
    assert np.array_equal(token_ids, uncached)


def test_prefill_chunking_basic():
    # The bonus's tests.py: a 10-token prompt fed to the cache in chunks [0:4], [4:8], [8:10].
    model = book_model({**SMALL_CONFIG, "context_length": 20})
    input_tokens = torch.tensor(np.random.default_rng(123).integers(0, 50257, (1, 10)))
    with torch.no_grad():
        model.reset_kv_cache()
        for i in range(0, 10, 4):
            logits = model(input_tokens[:, i:i + 4], use_cache=True)
        one_pass = model(input_tokens)
    np.testing.assert_allclose(logits.data[:, -1], one_pass.data[:, -1], atol=2e-5)
    token_ids = generate_text_simple_cached(model=model, idx=input_tokens, max_new_tokens=2, use_cache=True)
    assert token_ids.shape == (1, 12)
    assert np.array_equal(token_ids[:, :10], input_tokens.numpy())
