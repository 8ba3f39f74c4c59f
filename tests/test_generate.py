"""Tests of minigpt.generate: greedy decoding, temperature, top-k, top-p, eos, batches, errors.

Most tests drive `generate` with fake models (any callable ids (B, T) -> logits (B, T, V)), so
each row's distribution is known exactly and the allowed tokens of every row can be computed
independently; a few use a tiny GPTModel for the end-to-end properties (modes, crops, seeds).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd import Tensor
from minigpt.char_tokenizer import CharTokenizer
from minigpt.generate import generate, generate_text_simple, stream_generate, text_to_token_ids, token_ids_to_text
from minigpt.model import GPTModel

TINY = dict(vocab_size=23, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)


class RowModel:
    """Fake model: row b of every batch gets the fixed logits `table[b]` at every position."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)  # (B, V)
        self.calls = 0

    def __call__(self, ids):
        ids = np.asarray(ids)
        self.calls += 1
        batch, tokens = ids.shape
        assert batch == self.table.shape[0]
        return np.broadcast_to(self.table[:, None, :], (batch, tokens, self.table.shape[1])).copy()


class BigramModel:
    """Fake model: the logits after token i are `table[i]` (a Tensor, as GPTModel returns)."""

    def __init__(self, table, context_size=None):
        self.table = np.asarray(table, dtype=np.float32)  # (V, V)
        self.context_size = context_size
        self.inputs = []

    def __call__(self, ids):
        ids = np.asarray(ids)
        if self.context_size is not None:
            assert ids.shape[1] <= self.context_size, f"model got {ids.shape[1]} tokens, context is {self.context_size}"
        self.inputs.append(ids.copy())
        return Tensor(self.table[ids])  # (B, T) -> (B, T, V)


def tiny_model(**overrides):
    return GPTModel({**TINY, **overrides}, rng=7)


def allowed_top_k(row: np.ndarray, k: int) -> set:
    """The k ids of largest logit (ties broken towards lower ids), computed by sorting."""
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))
    return set(order[:k])


def allowed_top_p(row: np.ndarray, p: float, temperature: float) -> set:
    """The smallest set of most likely ids whose probability reaches p (plain Python sums)."""
    scaled = row.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = sorted(range(len(row)), key=lambda i: (-probs[i], i))
    kept, mass = set(), 0.0
    for i in order:
        kept.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return kept


# ---- greedy decoding ------------------------------------------------------------------------


def test_temperature_zero_equals_top_k_1_and_generate_text_simple():
    model = tiny_model()
    prompt = np.random.default_rng(0).integers(0, TINY["vocab_size"], size=(3, 4))
    greedy = generate(model, prompt, max_new_tokens=10, context_size=8, temperature=0.0)
    assert np.array_equal(greedy, generate_text_simple(model, prompt, max_new_tokens=10, context_size=8))
    for temperature in (0.0, 0.7, 1.0, 5.0):
        top1 = generate(model, prompt, 10, 8, temperature=temperature, top_k=1, rng=np.random.default_rng(1))
        assert np.array_equal(top1, greedy), temperature
    assert greedy.dtype == np.int64 and greedy.shape == (3, 14)
    assert np.array_equal(greedy[:, :4], prompt)


@settings(max_examples=30)
@given(
    table=st.lists(st.lists(st.integers(-2, 2), min_size=6, max_size=6), min_size=6, max_size=6),
    temperature=st.floats(0.05, 10.0),
    seed=st.integers(0, 2**16),
)
def test_top_k_1_is_greedy_even_with_tied_logits(table, temperature, seed):
    # Integer logits in [-2, 2] over 6 ids tie often: top_k=1 must still pick argmax's token.
    model = BigramModel(table)
    prompt = np.array([[0], [3]])
    greedy = generate_text_simple(model, prompt, max_new_tokens=6, context_size=4)
    sampled = generate(model, prompt, 6, 4, temperature=temperature, top_k=1, rng=np.random.default_rng(seed))
    assert np.array_equal(sampled, greedy)


def test_greedy_picks_the_argmax_of_the_last_position():
    table = np.eye(5)[[1, 2, 3, 4, 0]] * 3  # after token i comes i + 1 (mod 5)
    out = generate_text_simple(BigramModel(table), np.array([[2]]), max_new_tokens=6, context_size=3)
    assert out.tolist() == [[2, 3, 4, 0, 1, 2, 3]]


# ---- top-k and top-p ------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [23, 24, 1000])
def test_top_k_at_least_the_vocabulary_is_no_filtering(top_k):
    model = tiny_model()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    plain = generate(model, prompt, 8, 8, temperature=1.5, rng=np.random.default_rng(5))
    filtered = generate(model, prompt, 8, 8, temperature=1.5, top_k=top_k, rng=np.random.default_rng(5))
    assert np.array_equal(plain, filtered)


def test_top_p_one_is_no_filtering():
    model = tiny_model()
    prompt = np.array([[1, 2, 3]])
    plain = generate(model, prompt, 8, 8, temperature=1.0, rng=np.random.default_rng(9))
    assert np.array_equal(plain, generate(model, prompt, 8, 8, temperature=1.0, top_p=1.0, rng=np.random.default_rng(9)))


def test_each_row_gets_its_own_top_k_set():
    # Three rows with different orders of the same logits: each row's 3 best ids differ.
    table = np.array([
        [5.0, 4.9, 4.8, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 4.8, 4.9, 5.0],
        [0.0, 5.0, 0.0, 4.9, 0.0, 4.8, 0.0, 0.0],
    ])
    out = generate(RowModel(table), np.zeros((3, 1), dtype=np.int64), max_new_tokens=300, context_size=4,
                   temperature=1.0, top_k=3, rng=np.random.default_rng(0))
    for row, expected in zip(out[:, 1:], [{0, 1, 2}, {5, 6, 7}, {1, 3, 5}]):
        assert set(row.tolist()) == expected  # inside the row's set, and every member is drawn


def test_each_row_gets_its_own_top_p_set():
    # Row 0 is peaked (the nucleus of 0.9 is one token); row 1 is flat (the nucleus is 4 of 5 ids).
    table = np.log(np.array([[0.95, 0.02, 0.01, 0.01, 0.01], [0.2, 0.2, 0.2, 0.2, 0.2]]))
    out = generate(RowModel(table), np.zeros((2, 1), dtype=np.int64), max_new_tokens=300, context_size=4,
                   temperature=1.0, top_p=0.75, rng=np.random.default_rng(0))
    assert set(out[0, 1:].tolist()) == {0}
    assert set(out[1, 1:].tolist()) == {0, 1, 2, 3}  # ties keep the lowest ids


@settings(max_examples=25)
@given(
    table=st.lists(st.lists(st.floats(-4, 4), min_size=7, max_size=7), min_size=1, max_size=4),
    top_k=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_top_k_samples_stay_in_each_rows_k_best(table, top_k, seed):
    table = np.asarray(table, dtype=np.float32)
    out = generate(RowModel(table), np.zeros((len(table), 1), dtype=np.int64), max_new_tokens=40, context_size=2,
                   temperature=2.0, top_k=top_k, rng=np.random.default_rng(seed))
    for row, logits in zip(out[:, 1:], table):
        assert set(row.tolist()) <= allowed_top_k(logits, top_k)


@settings(max_examples=25)
@given(
    table=st.lists(st.lists(st.floats(-4, 4), min_size=6, max_size=6), min_size=1, max_size=4),
    top_p=st.floats(0.05, 1.0),
    temperature=st.floats(0.3, 3.0),
    seed=st.integers(0, 2**16),
)
def test_top_p_samples_stay_in_each_rows_nucleus(table, top_p, temperature, seed):
    table = np.asarray(table, dtype=np.float32)
    out = generate(RowModel(table), np.zeros((len(table), 1), dtype=np.int64), max_new_tokens=40, context_size=2,
                   temperature=temperature, top_p=top_p, rng=np.random.default_rng(seed))
    for row, logits in zip(out[:, 1:], table):
        # A cumulative sum within rounding of top_p may fall on either side: allow both sets.
        allowed = allowed_top_p(logits, min(top_p + 1e-9, 1.0), temperature) | allowed_top_p(logits, max(top_p - 1e-9, 1e-12), temperature)
        assert set(row.tolist()) <= allowed


def test_top_k_and_top_p_combine():
    # top_k=3 keeps ids {0, 1, 2}; renormalised, 0 and 1 hold 2/3 of the mass, so top_p=0.6 keeps {0, 1}.
    table = np.log(np.array([[0.3, 0.3, 0.3, 0.1 - 1e-9, 1e-9]]))
    out = generate(RowModel(table), np.zeros((1, 1), dtype=np.int64), 200, 2, temperature=1.0, top_k=3, top_p=0.6,
                   rng=np.random.default_rng(3))
    assert set(out[0, 1:].tolist()) == {0, 1}


# ---- end of sequence --------------------------------------------------------------------------


def test_a_row_that_emits_eos_stops_and_is_padded_while_others_go_on():
    eos = 0
    table = np.full((5, 5), -5.0)
    table[1, 2] = table[2, 0] = table[3, 4] = table[4, 3] = table[0, 1] = 5.0  # 1 -> 2 -> eos; 3 <-> 4
    model = BigramModel(table)
    out = generate(model, np.array([[1], [3]]), max_new_tokens=6, context_size=4, eos_id=eos)
    # After eos, row 0 would go on with 1 -> 2 -> eos ... if it were not stopped.
    assert out.tolist() == [[1, 2, 0, 0, 0, 0, 0], [3, 4, 3, 4, 3, 4, 3]]


def test_generation_ends_early_when_every_row_has_stopped():
    table = np.full((5, 5), -5.0)
    table[1, 0] = table[2, 3] = table[3, 0] = table[0, 4] = 5.0  # 1 -> eos at once; 2 -> 3 -> eos
    model = BigramModel(table)
    out = generate(model, np.array([[1], [2]]), max_new_tokens=50, context_size=4, eos_id=0)
    # As the book: the eos that ends the last row is not returned; row 0, which ended first, is
    # padded with eos_id up to the longest row.
    assert out.tolist() == [[1, 0], [2, 3]]
    assert len(model.inputs) == 2  # two forward passes, not fifty


def test_eos_is_not_part_of_a_single_rows_output_as_in_the_book():
    table = np.full((5, 5), -5.0)
    table[1, 2] = table[2, 3] = table[3, 0] = 5.0  # 1 -> 2 -> 3 -> eos
    out = generate(BigramModel(table), np.array([[1]]), max_new_tokens=10, context_size=4, eos_id=0)
    assert out.tolist() == [[1, 2, 3]]


def test_eos_in_sampling_mode_pads_with_eos():
    # Row 0 can only produce eos; row 1 never does.
    table = np.array([[9.0, -9.0, -9.0], [-90.0, 1.0, 1.0]])
    out = generate(RowModel(table), np.array([[1], [1]]), 10, 4, temperature=1.0, eos_id=0, rng=np.random.default_rng(0))
    assert out.shape == (2, 11)
    assert (out[0, 1:] == 0).all() and (out[1, 1:] != 0).all()


# ---- context, seeds, modes --------------------------------------------------------------------


def test_the_input_is_cropped_to_the_last_context_size_tokens():
    table = np.random.default_rng(2).normal(size=(6, 6))
    model = BigramModel(table, context_size=3)
    prompt = np.array([[0, 1, 2, 3, 4, 5, 0]])  # longer than the context
    out = generate(model, prompt, max_new_tokens=5, context_size=3)
    for step, seen in enumerate(model.inputs):
        assert np.array_equal(seen, out[:, : prompt.shape[1] + step][:, -3:])


def test_a_gpt_model_generates_past_its_context_length():
    model = tiny_model()
    out = generate(model, np.array([[1, 2, 3, 4, 5, 6, 7]]), max_new_tokens=12, context_size=8)
    assert out.shape == (1, 19)


def test_sampling_is_reproducible_with_a_seed():
    model = tiny_model()
    prompt = np.array([[1, 2], [3, 4]])
    runs = [generate(model, prompt, 15, 8, temperature=2.0, top_p=0.95, rng=np.random.default_rng(seed)) for seed in (11, 11, 12)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("training", [True, False])
def test_mode_is_restored_and_generation_runs_in_eval_mode(training):
    model = tiny_model(drop_rate=0.5)
    model.train(training)
    seen = []
    forward = model.forward

    def recording_forward(ids, **options):
        seen.append(model.training)
        return forward(ids, **options)

    model.forward = recording_forward
    prompt = np.array([[1, 2, 3]])
    first = generate(model, prompt, 5, 8)
    assert model.training is training
    assert seen and not any(seen)  # no dropout while generating
    assert np.array_equal(first, generate(model, prompt, 5, 8))  # hence deterministic


def test_mode_is_restored_when_the_model_raises():
    model = tiny_model()
    model.train()

    def failing_forward(ids, **options):
        raise RuntimeError("boom")

    model.forward = failing_forward
    with pytest.raises(RuntimeError, match="boom"):
        generate(model, np.array([[1]]), 3, 8)
    assert model.training is True


def test_prompt_as_tensor_and_zero_new_tokens():
    model = tiny_model()
    prompt = Tensor(np.array([[1, 2, 3]]))
    assert generate(model, prompt, 0, 8).tolist() == [[1, 2, 3]]
    assert generate(model, prompt, 2, 8).shape == (1, 5)


# ---- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "idx, kwargs, error, name",
    [
        ([[1, 2]], dict(top_k=0), ValueError, "top_k"),
        ([[1, 2]], dict(top_k=-3), ValueError, "top_k"),
        ([[1, 2]], dict(top_k=2.5), ValueError, "top_k"),
        ([[1, 2]], dict(temperature=-0.1), ValueError, "temperature"),
        ([[1, 2]], dict(temperature=float("nan")), ValueError, "temperature"),
        ([[1, 2]], dict(temperature=float("inf")), ValueError, "temperature"),
        ([[1, 2]], dict(top_p=0.0), ValueError, "top_p"),
        ([[1, 2]], dict(top_p=1.01), ValueError, "top_p"),
        ([[1, 2]], dict(top_p=-0.5), ValueError, "top_p"),
        ([[1, 2]], dict(top_p=float("nan")), ValueError, "top_p"),
        ([[1, 2]], dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
        ([[1, 2]], dict(context_size=0), ValueError, "context_size"),
        ([[1, 2]], dict(eos_id=1.0), TypeError, "eos_id"),
        (np.zeros((1, 0), dtype=np.int64), {}, ValueError, "empty prompt"),
        (np.zeros((2, 0), dtype=np.int64), {}, ValueError, "empty prompt"),
        ([[1.0, 2.0]], {}, TypeError, "idx"),
        ([[True, False]], {}, TypeError, "idx"),
        ([1, 2], {}, ValueError, "idx"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(idx, kwargs, error, name):
    arguments = {"max_new_tokens": 3, "context_size": 8, **kwargs}
    model = RowModel(np.zeros((1, 4)))
    with pytest.raises(error, match=name):
        generate(model, np.asarray(idx), **arguments)
    assert model.calls == 0


@pytest.mark.parametrize("eos_id", [-1, 4, 50256])
def test_an_eos_id_outside_the_vocabulary_is_an_error(eos_id):
    message = rf"eos_id must be a token id in \[0, 4\) \(the model's vocabulary has 4 tokens\), got {eos_id}"
    model = tiny_model(vocab_size=4)
    with pytest.raises(ValueError, match=message):  # a GPTModel: at the call, before any token
        stream_generate(model, np.array([[1, 2]]), max_new_tokens=3, context_size=8, eos_id=eos_id)
    with pytest.raises(ValueError, match=message):
        generate(model, [np.array([1]), np.array([1, 2])], max_new_tokens=3, context_size=8, eos_id=eos_id)
    callable_model = RowModel(np.zeros((1, 4)))  # any other callable: its logits give V at the first step
    with pytest.raises(ValueError, match=message):
        generate(callable_model, np.array([[1, 2]]), max_new_tokens=3, context_size=8, eos_id=eos_id)
    assert callable_model.calls == 1


# ---- text helpers -------------------------------------------------------------------------------


def test_text_to_token_ids_and_back():
    tokenizer = CharTokenizer.from_text("Every effort moves you")
    ids = text_to_token_ids("Every effort", tokenizer)
    assert ids.shape == (1, 12) and ids.dtype == np.int64
    assert token_ids_to_text(ids, tokenizer) == "Every effort"
    assert token_ids_to_text(ids[0], tokenizer) == "Every effort"
    assert token_ids_to_text(Tensor(ids), tokenizer) == "Every effort"
    with pytest.raises(ValueError, match="one row"):
        token_ids_to_text(np.concatenate([ids, ids]), tokenizer)


def test_text_to_token_ids_with_gpt2_allows_endoftext():
    from minigpt.tokenizer import get_encoding

    tokenizer = get_encoding("gpt2")
    ids = text_to_token_ids("Every effort moves you<|endoftext|>", tokenizer)
    assert ids.tolist() == [[6109, 3626, 6100, 345, 50256]]  # the book's ids (listing 5.1)
    assert token_ids_to_text(ids, tokenizer) == "Every effort moves you<|endoftext|>"


@pytest.mark.parametrize("options", [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=1.0, top_k=5),
                                     dict(temperature=1.0, top_p=0.9)])
@pytest.mark.parametrize("use_cache", [True, False])
def test_non_finite_logits_raise_instead_of_returning_token_0(options, use_cache):
    model = tiny_model()
    model.tok_emb.weight.data[...] = np.nan
    with pytest.raises(FloatingPointError, match="not finite at step 0"):
        generate(model, np.array([[1, 2]]), 3, 16, rng=np.random.default_rng(0), use_cache=use_cache, **options)
    with pytest.raises(FloatingPointError, match="not finite"):
        next(stream_generate(model, np.array([[1, 2]]), 3, 16, rng=np.random.default_rng(0), **options))


def test_minus_inf_logits_of_forbidden_tokens_are_allowed_but_a_row_of_only_minus_inf_is_not():
    def forbids_token_0(ids):  # (B, T) -> (B, T, 4): token 0 forbidden, token 2 the best
        logits = np.tile(np.array([-np.inf, 0.0, 1.0, 0.5]), ids.shape + (1,))
        return logits
    assert generate(forbids_token_0, np.array([[1]]), 2, 8).tolist() == [[1, 2, 2]]
    with pytest.raises(FloatingPointError, match="rows all -inf"):
        generate(lambda ids: np.full(ids.shape + (4,), -np.inf), np.array([[1]]), 2, 8)


def test_stream_generate_does_not_reserve_memory_for_max_new_tokens():
    model = tiny_model()
    context = model.cfg.context_length
    steps = stream_generate(model, [[1, 2]], 10**12, context)  # 7 TiB if reserved up front
    first = [next(steps) for _ in range(300)]  # past the first chunk of reserved columns
    assert len(first) == 300
    steps.close()
    assert generate(model, np.array([[1, 2]]), 300, context)[0, 2:].tolist() == [int(token[0]) for token in first]


def test_stream_generate_takes_prompts_of_different_lengths_as_generate():
    model = tiny_model()
    prompts = [[1, 2], [3, 4, 5]]
    streamed = np.stack(list(stream_generate(model, prompts, 3, 8)), axis=1)  # (B, 3)
    expected = generate(model, prompts, 3, 8)
    assert [row.tolist() for row in streamed] == [row[len(prompt):].tolist() for row, prompt in zip(expected, prompts)]
    with pytest.raises(ValueError, match="use generate"):
        stream_generate(model, prompts, 3, 8, use_cache=False)
