"""Tests of the KV cache (book ch. 4 bonus) and of fast generation: cached = uncached, batches of
prompts of different lengths, eos, streaming text, bounded memory, no graph.

Property tests draw small random GPT models (widths, heads, layers, vocabulary, context, qkv bias,
tied head), batch sizes and prompt lengths. Cached and uncached passes add the same numbers in a
different order, so logits agree to float32 rounding (checked with a tolerance stated below) and
greedy tokens agree exactly, except where two logits are tied to within that rounding: the check
then demands that the first differing token was such a near tie (it cannot pass otherwise).
"""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from minigpt.generate import decode_stream, generate, generate_text_simple, stream_generate
from minigpt.model import GPTModel

# float32 logits of these tiny models are O(1): cached and uncached sums differ by a few ulps.
LOGITS_ATOL = 2e-5
NEAR_TIE = 1e-4


@st.composite
def small_models(draw, max_context=16):
    heads = draw(st.integers(1, 3))
    cfg = dict(
        vocab_size=draw(st.integers(5, 40)),
        context_length=draw(st.integers(4, max_context)),
        emb_dim=heads * draw(st.integers(2, 6)),
        n_heads=heads,
        n_layers=draw(st.integers(1, 2)),
        drop_rate=draw(st.sampled_from([0.0, 0.3])),  # generation must switch dropout off
        qkv_bias=draw(st.booleans()),
        tie_weights=draw(st.booleans()),
    )
    return GPTModel(cfg, rng=draw(st.integers(0, 2**16)))


def uncached_logits(model, ids):
    with autograd.no_grad():
        return model(ids[:, -model.cfg.context_length:]).data[:, -1]  # (B, V)


def assert_same_greedy_tokens(model, cached, uncached, prompt_len):
    """Equal, or the first difference comes from a near tie of the uncached logits."""
    if np.array_equal(cached, uncached):
        return
    assert cached.shape == uncached.shape
    column = int(np.flatnonzero((cached != uncached).any(axis=0))[0])
    assert column >= prompt_len
    logits = uncached_logits(model, uncached[:, :column])
    top_two = np.sort(logits, axis=-1)[:, -2:]
    row = int(np.flatnonzero(cached[:, column] != uncached[:, column])[0])
    assert top_two[row, 1] - top_two[row, 0] < NEAR_TIE, f"tokens differ at column {column} without a near tie"


# ---- the cache computes what the whole sequence computes ------------------------------------------


@settings(max_examples=40)
@given(model=small_models(), batch=st.integers(1, 3), data=st.data())
def test_cached_logits_equal_the_full_pass_chunk_by_chunk(model, batch, data):
    context = model.cfg.context_length
    length = data.draw(st.integers(1, context))
    ids = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, model.cfg.vocab_size, (batch, length))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, length - 1), max_size=4)) if length > 1 else []))
    model.eval()
    with autograd.no_grad():
        full = model(ids).data  # (B, T, V)
        model.reset_kv_cache()
        chunks = [model(ids[:, start:stop], use_cache=True).data
                  for start, stop in zip([0] + cuts, cuts + [length])]  # the prompt, then pieces of any size
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), full, rtol=1e-5, atol=LOGITS_ATOL)
    assert model.current_pos == length and model.trf_blocks[0].att.ptr_current_pos == length


@settings(max_examples=30)
@given(model=small_models(), batch=st.integers(1, 3), prompt_len=st.integers(1, 6), new=st.integers(0, 24),
       seed=st.integers(0, 99))
def test_greedy_tokens_are_the_same_with_and_without_the_cache(model, batch, prompt_len, new, seed):
    # new + prompt_len often exceeds the context: the cache must then be rebuilt over the window.
    prompt = np.random.default_rng(seed).integers(0, model.cfg.vocab_size, (batch, prompt_len))
    context = model.cfg.context_length
    cached = generate(model, prompt, new, context)
    uncached = generate(model, prompt, new, context, use_cache=False)
    assert cached.shape == (batch, prompt_len + new)
    assert_same_greedy_tokens(model, cached, uncached, prompt_len)


@settings(max_examples=30)
@given(model=small_models(), batch=st.integers(1, 3), prompt_len=st.integers(1, 6), new=st.integers(1, 20),
       seed=st.integers(0, 99), temperature=st.floats(0.5, 2.0), top_k=st.none() | st.integers(1, 10),
       top_p=st.none() | st.floats(0.3, 1.0))
def test_sampling_with_one_seed_gives_the_same_tokens_with_and_without_the_cache(
        model, batch, prompt_len, new, seed, temperature, top_k, top_p):
    prompt = np.random.default_rng(seed).integers(0, model.cfg.vocab_size, (batch, prompt_len))
    runs = [generate(model, prompt, new, model.cfg.context_length, temperature=temperature, top_k=top_k, top_p=top_p,
                     rng=np.random.default_rng(seed), use_cache=use_cache) for use_cache in (True, False)]
    assert np.array_equal(runs[0], runs[1])


def test_past_the_context_the_cache_is_rebuilt_over_the_cropped_window():
    model = GPTModel(dict(vocab_size=30, context_length=6, emb_dim=8, n_heads=2, n_layers=2, drop_rate=0.0,
                          qkv_bias=True), rng=3)
    prompt = np.array([[1, 2, 3, 4]])
    steps = stream_generate(model, prompt, 10, context_size=6)
    sequence = prompt
    for step, token in enumerate(steps):
        # Logits of the next token from the cache equal the uncached pass over the last 6 tokens.
        expected = np.argmax(uncached_logits(model, sequence), axis=-1)
        assert token.tolist() == expected.tolist()
        sequence = np.concatenate([sequence, token[:, None]], axis=1)
        # The cache never holds more than the context: the window is recomputed once it is full.
        assert model.current_pos == min(sequence.shape[1] - 1, 6)
    assert sequence.shape == (1, 14)
    assert model.trf_blocks[0].att.cache_k.shape == (1, 2, 6, 4)  # (B, H, context, D): bounded


def test_the_book_generate_text_simple_cached_equals_generate_text_simple():
    from minigpt.generate import generate_text_simple_cached

    model = GPTModel(dict(vocab_size=50, context_length=12, emb_dim=12, n_heads=3, n_layers=2, drop_rate=0.1,
                          qkv_bias=False), rng=11)
    prompt = np.array([[3, 1, 4, 1, 5]])
    plain = generate_text_simple(model, prompt, max_new_tokens=15, context_size=12)
    assert np.array_equal(generate_text_simple_cached(model, prompt, max_new_tokens=15), plain)
    assert np.array_equal(generate_text_simple_cached(model, prompt, 15, use_cache=False), plain)


# ---- batches of prompts of different lengths, eos ---------------------------------------------------


@settings(max_examples=25)
@given(model=small_models(), lengths=st.lists(st.integers(1, 7), min_size=1, max_size=4), new=st.integers(0, 14),
       seed=st.integers(0, 99))
def test_each_prompt_of_a_ragged_batch_gets_what_it_gets_alone(model, lengths, new, seed):
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, model.cfg.vocab_size, length) for length in lengths]
    together = generate(model, prompts, new, model.cfg.context_length)
    assert isinstance(together, list) and len(together) == len(prompts)
    for prompt, row in zip(prompts, together):
        alone = generate(model, prompt[None, :], new, model.cfg.context_length, use_cache=False)
        assert row.dtype == np.int64 and np.array_equal(row[: len(prompt)], prompt)
        assert_same_greedy_tokens(model, row[None, :], alone, len(prompt))


def test_rows_that_reach_eos_stop_while_the_others_go_on():
    model = GPTModel(dict(vocab_size=40, context_length=32, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0,
                          qkv_bias=True), rng=5)
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, 40, length) for length in (3, 6, 2, 5)]
    free = generate(model, prompts, 12, 32)  # no eos: every row runs 12 tokens
    # End of sequence: a token that row 0 produces after 3 steps (and not before).
    eos_id = int(free[0][len(prompts[0]) + 3])
    assume_fresh = eos_id not in free[0][len(prompts[0]):len(prompts[0]) + 3]
    assert assume_fresh, "pick another seed: the chosen eos appears earlier in row 0"
    stopped = generate(model, prompts, 12, 32, eos_id=eos_id)
    for prompt, full, row in zip(prompts, free, stopped):
        new = full[len(prompt):]
        end = int(np.argmax(new == eos_id)) if (new == eos_id).any() else len(new)
        assert row.tolist() == full[: len(prompt) + end].tolist()  # cut before its first eos, eos not included
    assert len(stopped[0]) == len(prompts[0]) + 3
    # The same as one array: rows that stopped early are padded with eos_id after their end.
    batch = np.stack([prompt[:2] for prompt in prompts])
    array = generate(model, batch, 12, 32, eos_id=eos_id)
    rows = generate(model, [prompt[:2] for prompt in prompts], 12, 32, eos_id=eos_id)
    for padded, row in zip(array, rows):
        assert padded[: len(row)].tolist() == row.tolist()
        assert (padded[len(row):] == eos_id).all()
    assert array.shape[1] == max(len(row) for row in rows)


def test_ragged_prompts_without_a_cache_run_one_by_one():
    calls = []

    def model(ids):  # a plain callable: bigram logits, no KV cache
        calls.append(ids.shape)
        return np.eye(7, dtype=np.float32)[(ids + 1) % 7]

    out = generate(model, [[1, 2, 3], [5]], 3, context_size=4)
    assert [row.tolist() for row in out] == [[1, 2, 3, 4, 5, 6], [5, 6, 0, 1]]
    assert all(shape[0] == 1 for shape in calls)


# ---- streaming ---------------------------------------------------------------------------------------


def test_stream_generate_yields_the_tokens_of_generate_one_step_at_a_time():
    model = GPTModel(dict(vocab_size=30, context_length=10, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0,
                          qkv_bias=False), rng=2)
    prompt = np.array([[1, 2], [3, 4]])
    steps = list(stream_generate(model, prompt, 7, 10, temperature=1.0, rng=np.random.default_rng(0)))
    assert len(steps) == 7 and all(step.shape == (2,) and step.dtype == np.int64 for step in steps)
    expected = generate(model, prompt, 7, 10, temperature=1.0, rng=np.random.default_rng(0))
    assert np.array_equal(np.concatenate([prompt, np.stack(steps, axis=1)], axis=1), expected)


def test_a_character_split_over_two_tokens_is_streamed_once_whole():
    from minigpt.tokenizer import get_encoding

    tokenizer = get_encoding("gpt2")
    text = "Hi 😀 and 日本 é"
    ids = tokenizer.encode(text)
    assert len(ids) > len(text.split())  # the emoji and the kanji span several byte-level tokens
    pieces = list(decode_stream(ids, tokenizer))
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    emoji = tokenizer.encode("😀")
    assert [tokenizer.decode_single_token_bytes(token) for token in emoji] == [b"\xf0\x9f\x98", b"\x80"]
    assert list(decode_stream(emoji, tokenizer)) == ["😀"]  # one piece, after its second token
    # A stream that stops inside a character ends with U+FFFD, as tokenizer.decode does.
    assert list(decode_stream(emoji[:1], tokenizer)) == ["\ufffd"] == [tokenizer.decode(emoji[:1])]


def test_decode_stream_takes_the_arrays_stream_generate_yields_and_char_tokenizers():
    from minigpt.char_tokenizer import CharTokenizer

    tokenizer = CharTokenizer("abcé")
    assert "".join(decode_stream([np.array([3]), np.array([0]), 1], tokenizer)) == "éab"
    with pytest.raises(ValueError, match="one integer token id per step"):
        list(decode_stream([np.array([1, 2])], tokenizer))


# ---- resources: memory bounded by the cache, no graph -------------------------------------------------


def test_memory_is_bounded_by_the_cache():
    model = GPTModel(dict(vocab_size=64, context_length=256, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0,
                          qkv_bias=False), rng=0)
    prompt = np.array([[1, 2, 3]])

    def peak_bytes(new_tokens):
        tracemalloc.start()
        generate(model, prompt, new_tokens, 256)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    peak_bytes(100)  # warm-up: first calls allocate lasting caches (NumPy's, the allocator's)
    short, long = peak_bytes(10), peak_bytes(100)
    # 90 more tokens add 90 cache slots of 2 (k, v) x 2 layers x 32 floats (512 bytes), their ids
    # and the yielded arrays (about 130 bytes): under 2 KB per token with room to spare. Anything
    # kept per step (a cache of graph-connected tensors, every step's logits) would exceed it.
    assert long - short < 90 * 2048 + 16_000, (short, long)
    cache = model.trf_blocks[0].att.cache_k
    assert cache.shape == (1, 4, 103, 8) and cache.dtype == np.float32  # (B, H, prompt + new, D)


def test_no_graph_is_built_while_generating():
    model = GPTModel(dict(vocab_size=20, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0,
                          qkv_bias=False), rng=0)
    outputs = []
    forward = model.forward

    fed = []

    def recording_forward(ids, **options):
        logits = forward(ids, **options)
        outputs.append(logits)
        fed.append(np.asarray(ids).shape[1])
        return logits

    model.forward = recording_forward
    generate(model, np.array([[1, 2]]), 10, 8)
    # The prompt, one token per step while the sequence fits (3..8 tokens), then the window of 8
    # for each of the last three steps (the cache rebuilt past the context).
    assert fed == [2, 1, 1, 1, 1, 1, 1, 8, 8, 8]
    assert all(logits.grad_fn is None and not logits.requires_grad for logits in outputs)
    assert all(param.grad is None for param in model.parameters())
    assert all(logits.shape[1] == 1 for logits in outputs)  # the head ran on the last position only


# ---- errors ---------------------------------------------------------------------------------------------


def test_cache_errors_are_clear():
    model = GPTModel(dict(vocab_size=20, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0,
                          qkv_bias=False), rng=0)
    with autograd.no_grad():
        model.reset_kv_cache(max_seq_len=4)
        model(np.array([[1, 2, 3]]), use_cache=True)
        with pytest.raises(ValueError, match="KV cache holds 3 tokens and can take 1 more, got 2"):
            model(np.array([[1, 2]]), use_cache=True)
        model.reset_kv_cache()
        model(np.array([[1, 2, 3]]), use_cache=True)
        with pytest.raises(ValueError, match="batch of 1 .*got 2 .*reset_kv_cache"):
            model(np.array([[1], [2]]), use_cache=True)
        model.reset_kv_cache(left_padding=[1, 0, 2])
        with pytest.raises(ValueError, match="left_padding has 3 rows, the tokens have 1"):
            model(np.array([[1, 2]]), use_cache=True)
    with pytest.raises(ValueError, match="left_padding must be a 1-D array of integers >= 0"):
        model.reset_kv_cache(left_padding=[-1, 0])
    with pytest.raises(ValueError, match="max_seq_len"):
        model.reset_kv_cache(max_seq_len=0)
    with pytest.raises(ValueError, match=r"idx\[1\] is an empty prompt"):
        generate(model, [[1, 2], []], 3, 8)
