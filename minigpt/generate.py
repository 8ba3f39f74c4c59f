"""Text generation: turn a prompt into new tokens (book ch. 4.7, 5.3, and the ch. 4 KV-cache bonus).

`generate` is the book's chapter-5 `generate` (temperature scaling, top-k, `eos_id`) extended with
nucleus (top-p) sampling, batches in which every row gets its own top-k / top-p threshold and
stops on its own, prompts of different lengths in one batch, and the KV cache of the chapter-4
bonus (`gpt_with_kv_cache.py`): the prompt runs once, then each new token costs one small step
(`use_cache=True`, the default, for models that have a cache). `stream_generate` yields the tokens
as they are made and `decode_stream` turns them into text as it goes, never splitting a UTF-8
character. With temperature 0 it is greedy decoding, the same as `generate_text_simple` of
chapter 4 and `generate_text_simple_cached` of the bonus.

Shape letters: B batch (prompts), T tokens so far, V vocabulary.

References: Raschka, "Build a Large Language Model (From Scratch)", sections 4.7 and 5.3, and the
chapter-4 bonus material "KV cache" (ch04/03_kv-cache); Holtzman et al. 2020, "The Curious Case
of Neural Text Degeneration" (nucleus sampling, sec. 3.1); Fan et al. 2018 (top-k sampling).
"""

from __future__ import annotations

import codecs
import math

import numpy as np

from autograd import Tensor, no_grad
from autograd import random as _random
from autograd.random import resolve_generator


def text_to_token_ids(text: str, tokenizer) -> np.ndarray:
    """Encode `text` into a batch of one: int64 array (1, T) (book listing 5.1).

    Args:
        text: the prompt; `<|endoftext|>` in it is allowed and becomes its id.
        tokenizer: anything with `encode(text, allowed_special=...)`, e.g. get_encoding("gpt2").
    """
    ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    return np.asarray(ids, dtype=np.int64)[None, :]  # (T,) -> (1, T): add the batch dimension


def token_ids_to_text(token_ids, tokenizer) -> str:
    """Decode a batch of one (1, T), or a flat (T,) sequence, back to text (book listing 5.1).

    Raises:
        ValueError: a batch with more than one row (decode each row separately).
    """
    ids = np.asarray(token_ids.data if isinstance(token_ids, Tensor) else token_ids)
    if ids.ndim == 2:
        if ids.shape[0] != 1:
            raise ValueError(f"token_ids_to_text: expected a batch of one row, got shape {ids.shape}")
        ids = ids[0]
    return tokenizer.decode(ids.tolist())


def _as_id_batch(idx, argument: str = "idx") -> np.ndarray:
    ids = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{argument} must hold integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"{argument} must have shape (batch, num_tokens), got shape {ids.shape}")
    if ids.shape[1] == 0:
        raise ValueError(f"{argument} is an empty prompt (shape {ids.shape}): give at least one token")
    return ids.astype(np.int64, copy=False)


def generate_text_simple(model, idx, max_new_tokens: int, context_size: int) -> np.ndarray:
    """Greedy decoding: append the most likely next token `max_new_tokens` times (book listing 4.8).

    Args:
        model: a callable mapping int ids (B, T) to logits (B, T, V), e.g. GPTModel.
        idx: int array or Tensor (B, T), the prompt(s).
        max_new_tokens: how many tokens to append.
        context_size: the model's supported context length; longer inputs are cropped to the
            last `context_size` tokens before each forward pass.

    Returns:
        int64 array (B, T + max_new_tokens).

    Raises:
        ValueError/TypeError: see `generate`.
    """
    return generate(model, idx, max_new_tokens, context_size, temperature=0.0)


def generate_text_simple_cached(model, idx, max_new_tokens: int, context_size: int | None = None,
                                use_cache: bool = True) -> np.ndarray:
    """Greedy decoding with the KV cache (the book's ch. 4 bonus, `gpt_with_kv_cache.py`).

    The same tokens as `generate_text_simple`; the prompt runs once, then one token per step.

    Args:
        model: a GPTModel (its `reset_kv_cache` and `forward(ids, use_cache=True)` are used).
        idx: int array or Tensor (B, T). max_new_tokens: how many tokens to append.
        context_size: None for the model's context_length (`model.pos_emb.num_embeddings`).
        use_cache: False runs the whole cropped sequence every step, as `generate_text_simple`.

    Returns:
        int64 array (B, T + max_new_tokens).
    """
    context_size = context_size or model.pos_emb.num_embeddings
    return generate(model, idx, max_new_tokens, context_size, temperature=0.0, use_cache=use_cache)


def _filter_top_k(logits: np.ndarray, top_k: int) -> np.ndarray:
    """Keep exactly the `top_k` largest logits of each row and set the others to -inf.

    Among logits tied with a row's k-th largest, those with the lowest ids are kept (the ones
    `np.argmax` would pick first), so top_k=1 always keeps the greedy token and sampling with
    top_k=1 equals greedy decoding even when logits tie.

    Example: logits [[1, 3, 3, 0]], top_k=2 -> [[-inf, 3, 3, -inf]]; top_k=1 -> [[-inf, 3, -inf, -inf]].
    """
    vocab_size = logits.shape[-1]
    if top_k >= vocab_size:
        return logits  # keeping every token is no filtering at all
    kth_largest = np.partition(logits, vocab_size - top_k, axis=-1)[:, vocab_size - top_k, None]  # (B, 1)
    above = logits > kth_largest  # (B, V): kept for sure; fewer than top_k per row
    tied = logits == kth_largest  # (B, V): the k-th value, possibly several times
    room = top_k - above.sum(axis=-1, keepdims=True)  # (B, 1): how many of the tied ones fit
    keep = above | (tied & (np.cumsum(tied, axis=-1) <= room))  # the first `room` tied ids
    return np.where(keep, logits, -np.inf)


def _filter_top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep, per row, the smallest set of most likely tokens whose probability reaches `top_p`.

    The most likely token is always kept. Returns renormalised probabilities (B, V).
    """
    order = np.argsort(-probs, axis=-1, kind="stable")  # (B, V), most likely first
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the tokens ahead of each
    keep_sorted = mass_before < top_p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    filtered = np.where(keep, probs, 0)
    return filtered / filtered.sum(axis=-1, keepdims=True)


def _check_sampling(max_new_tokens, context_size, temperature, top_k, eos_id, top_p) -> None:
    """Check generate's arguments up front, each error naming its argument."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(context_size, bool) or not isinstance(context_size, (int, np.integer)) or context_size < 1:
        raise ValueError(f"context_size must be an integer >= 1, got {context_size!r}")
    # `not x >= 0` (rather than `x < 0`) also rejects NaN, which would make every probability NaN.
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.integer, np.floating)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] or None, got {top_p!r}")
    if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer))):
        raise TypeError(f"eos_id must be an integer token id or None, got {eos_id!r}")


def _check_eos_id(eos_id, vocab_size) -> None:
    """Raise unless `eos_id` (None: no end token) is a token id of a vocabulary of `vocab_size`:
    an id the model can never produce would silently never end a row."""
    if eos_id is not None and vocab_size is not None and not 0 <= eos_id < vocab_size:
        raise ValueError(f"eos_id must be a token id in [0, {vocab_size}) (the model's vocabulary has {vocab_size} tokens), "
                         f"got {eos_id}")


def _vocab_size(model) -> int | None:
    """The vocabulary size of a GPTModel (its config); None for another callable (known from its logits)."""
    vocab_size = getattr(getattr(model, "cfg", None), "vocab_size", None)
    return vocab_size if isinstance(vocab_size, (int, np.integer)) else None


def _as_prompt_list(prompts) -> list[np.ndarray]:
    """A list of 1-D int64 prompts (possibly of different lengths), each checked."""
    rows = []
    for row, prompt in enumerate(prompts):
        ids = np.asarray(prompt.data if isinstance(prompt, Tensor) else prompt)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise TypeError(f"idx[{row}] must be a 1-D sequence of integer token ids, got shape {ids.shape}, dtype {ids.dtype}")
        if ids.size == 0:
            raise ValueError(f"idx[{row}] is an empty prompt: give at least one token")
        rows.append(ids.astype(np.int64))
    if not rows:
        raise ValueError("idx is an empty list of prompts: give at least one")
    return rows


def _next_tokens(logits: np.ndarray, temperature: float, top_k, top_p, rng) -> np.ndarray:
    """One token id per row (B,) from the last position's logits (B, V): greedy or sampled."""
    if top_k is not None:
        logits = _filter_top_k(logits, top_k)
    if temperature == 0:
        return np.argmax(logits, axis=-1)  # (B,)
    if not isinstance(rng, np.random.Generator):
        return _sample_like_torch(logits, temperature, top_p, rng)
    scaled = _scale_by_temperature(logits.astype(np.float64), temperature)  # float64: exact sampling
    scaled -= scaled.max(axis=-1, keepdims=True)  # softmax is shift invariant
    probs = np.exp(scaled)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        probs = _filter_top_p(probs, top_p)
    # Inverse-CDF sampling, one uniform draw per row (NumPy's streams).
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
    return np.argmax(cumulative > draws, axis=-1)


def _scale_by_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """logits / temperature in the logits' dtype (B, V). A temperature so small (say 1e-320) that
    the division overflows to +inf (and inf - inf would be NaN) shifts first, so the largest
    logits stay 0: greedy decoding's limit, not token 0 from NaN probabilities."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # -inf: a probability of 0
        scaled = logits / logits.dtype.type(temperature)
        if np.isposinf(scaled).any() or np.isnan(scaled).any():
            scaled = (logits - logits.max(axis=-1, keepdims=True)) / logits.dtype.type(temperature)
            scaled[np.isnan(scaled)] = 0.0  # 0 / 0: a largest logit divided by a temperature of 0 in this dtype
    return scaled


def _sample_like_torch(logits: np.ndarray, temperature: float, top_p, generator) -> np.ndarray:
    """The book's `torch.multinomial(torch.softmax(logits / temperature, dim=-1), num_samples=1)`
    (ch. 5.3), in the logits' dtype, with PyTorch's draws: (B, V) -> (B,) token ids.

    PyTorch samples one token as argmax(p / q), q ~ Exp(1) over the whole (B, V) array (see
    `autograd.random.multinomial`), so after `torch.manual_seed(123)` the book's tokens come out.
    """
    scaled = _scale_by_temperature(logits, temperature)  # (B, V)
    scaled = scaled - scaled.max(axis=-1, keepdims=True)  # softmax is shift invariant
    probs = np.exp(scaled)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1:
        probs = _filter_top_p(probs, top_p)
    return _random.multinomial(resolve_generator(generator), probs, 1, False)[:, 0]


def _as_array(logits) -> np.ndarray:
    return logits.data if isinstance(logits, Tensor) else np.asarray(logits)


def _check_finite_logits(logits: np.ndarray, step: int) -> None:
    """Raise if the last position's logits (B, V) hold NaN or +inf, or a row is all -inf.

    Such logits give no distribution: argmax and the sampler would silently pick token 0. One
    `isfinite` pass over (B, V) per step; -inf alone (a token the model forbids) is allowed.
    """
    if np.isfinite(logits).all():
        return
    nan, pos_inf = np.isnan(logits), np.isposinf(logits)
    no_finite_row = np.isneginf(logits).all(axis=-1)  # (B,)
    if not (nan.any() or pos_inf.any() or no_finite_row.any()):
        return
    rows = np.flatnonzero(nan.any(axis=-1) | pos_inf.any(axis=-1) | no_finite_row)
    raise FloatingPointError(
        f"the model's logits are not finite at step {step} (NaN/inf): {int(nan.sum())} NaN, {int(pos_inf.sum())} +inf, "
        f"{int(no_finite_row.sum())} rows all -inf, in rows {rows[:10].tolist()} of logits of shape {logits.shape}; "
        "the model's weights or inputs hold NaN/inf (check the checkpoint), no token can be chosen")


def _left_pad(prompts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-align prompts of different lengths in one batch: ids (B, longest) and left_padding (B,)."""
    lengths = np.array([len(prompt) for prompt in prompts])
    longest = lengths.max()
    batch = np.zeros((len(prompts), longest), np.int64)  # padding id 0: never seen, any id would do
    for row, prompt in enumerate(prompts):
        batch[row, longest - len(prompt):] = prompt  # right-aligned: the new tokens share columns
    return batch, longest - lengths


class _CachedLogits:
    """Next-token logits with the model's KV cache: the prompt once, then one token per step.

    While the sequence fits in `context_size`, each step feeds only the newest token. Past it, the
    positions of the cropped window shift by one every step (the position table is absolute), so
    every cached key is stale: the cache is rebuilt over the last `context_size` tokens, which is
    exactly what the no-cache path computes.
    """

    def __init__(self, model, left_padding: np.ndarray, max_len: int, context_size: int):
        self.model, self.left_padding, self.context_size = model, left_padding, context_size
        self.max_seq_len = min(max_len, context_size)
        self.fresh = False  # the cache holds every token but the newest

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        num_tokens = ids.shape[1]
        with no_grad():
            if self.fresh and num_tokens <= self.context_size:
                logits = self.model(ids[:, -1:], use_cache=True, last_only=True)  # (B, 1) -> (B, 1, V)
            else:
                cropped = max(num_tokens - self.context_size, 0)  # columns that fall out of the window
                self.model.reset_kv_cache(self.max_seq_len, np.maximum(self.left_padding - cropped, 0))
                logits = self.model(ids[:, cropped:], use_cache=True, last_only=True)  # (B, T) -> (B, 1, V)
        self.fresh = True
        return _as_array(logits)[:, -1, :]  # (B, V)


def _uncached_logits(model, context_size: int):
    """Next-token logits without a cache: the whole cropped sequence every step."""
    # A GPTModel can skip the output head for every position but the last one.
    options = {"last_only": True} if hasattr(model, "reset_kv_cache") else {}

    def next_token_logits(ids: np.ndarray) -> np.ndarray:
        with no_grad():
            logits = model(ids[:, -context_size:], **options)  # (B, T, V); crop: the model sees at most context_size
        return _as_array(logits)[:, -1, :]  # (B, V): only the last position predicts a new token
    return next_token_logits


def stream_generate(
    model,
    idx,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    top_p: float | None = None,
    rng=None,
    use_cache: bool = True,
    left_padding=None,
):
    """Yield the next token of every row as soon as it is made: int64 arrays (B,), one per step.

    The generator behind `generate` (same arguments, same tokens): `np.concatenate([idx,
    np.stack(list(stream_generate(...)), axis=1)], axis=1)` equals `generate(...)`. Stream text
    with `decode_stream`. The model is in eval mode while the generator runs and goes back to
    training mode when it finishes or is closed.

    Args:
        model, idx, max_new_tokens, context_size, temperature, top_k, eos_id, top_p, rng,
            use_cache: as `generate` (idx here is a 2-D batch (B, T)).
        left_padding: None or ints (B,): row b of idx starts with left_padding[b] padding tokens
            (prompts of different lengths, right-aligned; needs a model with a KV cache).

    Yields:
        int64 (B,): each row's new token; a row that has stopped yields eos_id from then on. No
        step is yielded once every row has produced eos_id (that eos is not part of any text).

    Memory: the output grows as tokens come (nothing is reserved for `max_new_tokens` up front)
    and the KV cache holds at most `context_size` positions, so a huge `max_new_tokens` is fine.

    Raises:
        ValueError/TypeError: see `generate`, before the first token; a list of prompts of
            different lengths with a model without KV cache (use `generate`, which runs them one by one).
        FloatingPointError: the model's logits hold NaN or +inf (or a row is all -inf) at some step.
    """
    _check_sampling(max_new_tokens, context_size, temperature, top_k, eos_id, top_p)
    _check_eos_id(eos_id, _vocab_size(model))
    cached = use_cache and hasattr(model, "reset_kv_cache")
    if isinstance(idx, (list, tuple)):
        prompts = _as_prompt_list(idx)
        if len({len(prompt) for prompt in prompts}) > 1:  # different lengths: left-pad them into one batch
            if left_padding is not None:
                raise ValueError("left_padding is only for a 2-D batch idx; a list of prompts of different lengths is padded automatically")
            if not cached:
                raise ValueError("stream_generate: prompts of different lengths need a model with a KV cache and use_cache=True; "
                                 "use generate(), which runs them one by one")
            idx, left_padding = _left_pad(prompts)
        else:
            idx = np.stack(prompts)
    ids = _as_id_batch(idx)
    if left_padding is not None and not cached:
        raise ValueError("left_padding needs a model with a KV cache (reset_kv_cache) and use_cache=True")
    left_padding = np.zeros(ids.shape[0], np.int64) if left_padding is None else np.asarray(left_padding, np.int64)
    if temperature > 0:
        rng = resolve_generator(rng)  # once: an int seed is one stream for the whole generation
    return _stream(model, ids, max_new_tokens, context_size, temperature, top_k, eos_id, top_p, rng, cached, left_padding)


_GROWTH_CHUNK = 256  # output columns reserved at a time


def _stream(model, ids, max_new_tokens, context_size, temperature, top_k, eos_id, top_p, rng, cached, left_padding):
    batch_size, prompt_len = ids.shape
    # Filled one column per step and grown in chunks: max_new_tokens may be far more than will be made.
    sequence = np.empty((batch_size, prompt_len + min(max_new_tokens, _GROWTH_CHUNK)), np.int64)
    sequence[:, :prompt_len] = ids
    if cached:
        next_token_logits = _CachedLogits(model, left_padding, prompt_len + max_new_tokens, context_size)
    else:
        next_token_logits = _uncached_logits(model, context_size)
    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    finished = np.zeros(batch_size, dtype=bool)  # (B,) rows that have produced eos_id
    try:
        for step in range(max_new_tokens):
            length = prompt_len + step
            logits = next_token_logits(sequence[:, :length])  # (B, V)
            _check_finite_logits(logits, step)
            if step == 0:  # any callable: its vocabulary is the logits' last dimension (a GPTModel's was checked already)
                _check_eos_id(eos_id, logits.shape[-1])
            next_ids = _next_tokens(logits, temperature, top_k, top_p, rng)  # (B,)
            if eos_id is not None:
                next_ids = np.where(finished, eos_id, next_ids)
                finished |= next_ids == eos_id
                if finished.all():
                    return  # the eos that ends the last row is not part of its text
            if length == sequence.shape[1]:  # full: room for the next chunk of steps
                room = min(max_new_tokens - step, max(_GROWTH_CHUNK, length))  # doubling: amortised O(1) per token
                sequence = np.concatenate([sequence, np.empty((batch_size, room), np.int64)], axis=1)
            sequence[:, length] = next_ids
            yield sequence[:, length].copy()
    finally:
        if was_training:
            model.train()


def generate(
    model,
    idx,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    top_p: float | None = None,
    rng=None,
    use_cache: bool = True,
):
    """Generate up to `max_new_tokens` tokens after each prompt (book listing 5.4, extended).

    Each step takes the last position's logits, seeing at most the last `context_size` tokens;
    keeps the top-k logits per row (if `top_k`); with temperature 0 picks the argmax (greedy),
    otherwise divides the logits by the temperature, softmax, keeps the nucleus of probability
    `top_p` per row (if `top_p`), and samples from the result. The book's positional order
    `generate(model, idx, max_new_tokens, context_size, temperature, top_k, eos_id)` is kept.

    With `use_cache` (the default) and a model that has a KV cache (`GPTModel`: book ch. 4
    bonus), the prompt runs once and every later step feeds only the newest token; past
    `context_size` the cache is rebuilt over the cropped window each step, so the tokens are the
    same as without the cache (the logits agree to float32 rounding). Other models (any callable
    ids (B, T) -> logits (B, T, V)) run the whole cropped sequence every step.

    Args:
        model: a GPTModel, or any callable ids (B, T) -> logits (B, T, V); switched to eval mode
            (no dropout) while generating and restored afterwards when it has `train()`/`eval()`.
        idx: the prompts: an int array or Tensor (B, T) (rows of equal length), or a list of 1-D
            prompts of any lengths (e.g. chapter 7's instructions). A list is left-padded into one
            batch for a model with a KV cache (padding hidden by the attention mask, positions
            counted per row), so every row gets exactly what it would get alone; other models
            run the prompts one by one.
        max_new_tokens: number of tokens to append (>= 0).
        context_size: the model's context length; the input is cropped to it.
        temperature: 0 for greedy decoding; > 0 scales the logits (below 1 sharper, above 1 flatter).
        top_k: keep only the k most likely tokens per row (k >= 1; of tied logits the lowest ids);
            None or k >= V: no filtering.
        eos_id: end of sequence, as the book: a row that produces this id stops, and the id is not
            part of its output. A batch runs until every row has stopped (or max_new_tokens): in
            an array result, a row that stopped early is padded on the right with eos_id (cut
            each row at its first eos_id after the prompt, e.g. `row[T:][row[T:] != eos_id]`);
            in a list result every row simply ends where it stopped.
        top_p: keep the smallest set of tokens with total probability >= top_p, in (0, 1].
        rng: generator for sampling: None draws from the default generator (after the book's
            `torch.manual_seed(123)`, PyTorch's `torch.multinomial` draws and the book's tokens),
            an int seed or `autograd.Generator` likewise from that generator; a
            `np.random.Generator` samples by inverse CDF from NumPy's streams. With one seed,
            cached and uncached generation draw the same tokens.
        use_cache: use the model's KV cache when it has one (default True).

    Returns:
        For an array prompt: int64 array (B, T + n), n <= max_new_tokens (fewer when every row
        reached eos_id). For a list: a list of int64 arrays, each prompt followed by its new tokens.

    Raises:
        ValueError: empty prompt, wrong rank, max_new_tokens < 0, context_size < 1, top_k < 1,
            temperature < 0 (or NaN, inf), top_p outside (0, 1], eos_id outside [0, V) (for a
            GPTModel at once, for another callable at the first step, when its logits give V).
        TypeError: non-integer ids or eos_id.
        FloatingPointError: the model's last-position logits hold NaN or +inf (or a row is all
            -inf): there is no token to choose, rather than silently returning token 0.

    Example:
        >>> out = generate(model, text_to_token_ids("Every effort moves you", tokenizer), 25,
        ...                context_size=1024, temperature=1.4, top_k=25, rng=np.random.default_rng(123))
    """
    options = dict(temperature=temperature, top_k=top_k, eos_id=eos_id, top_p=top_p, use_cache=use_cache)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = resolve_generator(rng)  # one stream for every prompt
    if isinstance(idx, (list, tuple)):
        return _generate_list(model, _as_prompt_list(idx), max_new_tokens, context_size, rng, options)
    ids = _as_id_batch(idx)
    steps = list(stream_generate(model, ids, max_new_tokens, context_size, rng=rng, **options))
    if not steps:
        return ids.copy()
    return np.concatenate([ids, np.stack(steps, axis=1)], axis=1)  # (B, T) + (B, n) -> (B, T + n)


def _generate_list(model, prompts: list[np.ndarray], max_new_tokens, context_size, rng, options) -> list[np.ndarray]:
    """generate() for prompts of different lengths: one left-padded batch, or one by one."""
    _check_sampling(max_new_tokens, context_size, options["temperature"], options["top_k"], options["eos_id"], options["top_p"])
    if not (options["use_cache"] and hasattr(model, "reset_kv_cache")):
        return [generate(model, prompt[None, :], max_new_tokens, context_size, rng=rng, **options)[0] for prompt in prompts]
    batch, left_padding = _left_pad(prompts)
    steps = list(stream_generate(model, batch, max_new_tokens, context_size, rng=rng, left_padding=left_padding, **options))
    new = np.stack(steps, axis=1) if steps else np.zeros((len(prompts), 0), np.int64)  # (B, n)
    eos_id = options["eos_id"]
    outputs = []
    for prompt, row in zip(prompts, new):
        if eos_id is not None and (row == eos_id).any():
            row = row[: np.argmax(row == eos_id)]  # a row ends at its first eos_id
        outputs.append(np.concatenate([prompt, row]))
    return outputs


def decode_stream(token_ids, tokenizer):
    """Decode a stream of token ids into text pieces, each made of whole characters.

    GPT-2's byte-level tokens can split one UTF-8 character over two tokens (e.g. an emoji or
    "é" in rare contexts): the bytes of such a token are held back until the character is
    complete, so every character is yielded exactly once, whole. Undecodable bytes become U+FFFD,
    as `tokenizer.decode` does (errors="replace"), and the concatenated pieces equal
    `tokenizer.decode(all_ids)`.

    Args:
        token_ids: an iterable of int ids (or of 1-element arrays, as `stream_generate` yields for
            a batch of one).
        tokenizer: with `decode_bytes(ids)` (GPT-2's Encoding, BPETokenizer), or else `decode(ids)`
            (a character-level tokenizer, whose tokens are whole characters).

    Yields:
        str pieces, never empty.

    Raises:
        ValueError: a step with more than one id (decode each row of a batch on its own).
    """
    decode_bytes = getattr(tokenizer, "decode_bytes", None)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in token_ids:
        token = np.asarray(token)
        if token.size != 1 or token.dtype.kind not in "iu":
            raise ValueError(f"decode_stream: expected one integer token id per step (a batch of one), got {token!r}")
        token = int(token.reshape(-1)[0])
        piece = decoder.decode(decode_bytes([token])) if decode_bytes is not None else tokenizer.decode([token])
        if piece:
            yield piece
    if decode_bytes is not None:
        tail = decoder.decode(b"", final=True)  # bytes of an unfinished character: U+FFFD
        if tail:
            yield tail


def next_token_ids(logits, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Choose the next token of each row from its last-position logits, as one step of `generate`.

    The step of `generate` on its own, for callers that run the model themselves (the server's
    batches, where every row has its own settings and generator: call it per row on
    `logits[b:b + 1]`). Greedy at temperature 0; otherwise top-k, temperature, top-p, one draw
    per row from `rng`.

    Args:
        logits: float (B, V), the logits of the last position of each row.
        temperature, top_k, top_p: as `generate`. rng: needed when temperature > 0.

    Returns:
        int64 (B,) token ids.

    Raises:
        ValueError: settings out of range (as `generate`), logits not 2-D, or temperature > 0
            without rng.
        FloatingPointError: NaN or +inf logits, or a row all -inf (no token can be chosen).
    """
    logits = _as_array(logits)
    _check_sampling(1, 1, temperature, top_k, None, top_p)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, vocab_size), got shape {logits.shape}")
    if temperature > 0 and rng is None:
        raise ValueError("rng: a np.random.Generator is needed to sample at temperature > 0")
    _check_finite_logits(logits, 0)
    return _next_tokens(logits, temperature, top_k, top_p, rng).astype(np.int64)
