"""Text generation: turn a prompt into new tokens, one forward pass per token (book ch. 4.7, 5.3).

`generate` is the book's chapter-5 `generate` (temperature scaling and top-k) extended with
nucleus (top-p) sampling, stopping at an end-of-sequence id, and batches in which every row gets
its own top-k / top-p threshold and stops on its own. With temperature 0 it is greedy decoding,
the same as `generate_text_simple` of chapter 4.

Shape letters: B batch (prompts), T tokens so far, V vocabulary.

References: Raschka, "Build a Large Language Model (From Scratch)", sections 4.7 and 5.3;
Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration" (nucleus sampling, sec. 3.1);
Fan et al. 2018 (top-k sampling).
"""

from __future__ import annotations

import math

import numpy as np

from autograd import Tensor, no_grad


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


def _next_token_logits(model, ids: np.ndarray, context_size: int) -> np.ndarray:
    """Logits (B, V) for the next token, seeing at most the last `context_size` tokens."""
    context = ids[:, -context_size:]  # crop: the model supports at most context_size tokens
    logits = model(context)  # (B, T, V)
    logits = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    return logits[:, -1, :]  # (B, T, V) -> (B, V): only the last position predicts a new token


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


def generate(
    model,
    idx,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Generate up to `max_new_tokens` tokens after each prompt row (book listing 5.4, extended).

    Each step: crop to the last `context_size` tokens, run the model, take the last position's
    logits; keep the top-k logits per row (if `top_k`); with temperature 0 pick the argmax
    (greedy), otherwise divide the logits by the temperature, softmax, keep the nucleus of
    probability `top_p` per row (if `top_p`), and sample from the result.

    Args:
        model: callable ids (B, T) -> logits (B, T, V); switched to eval mode (no dropout) while
            generating and restored afterwards when it has `train()`/`eval()`.
        idx: int array or Tensor (B, T), the prompts (all rows of equal length).
        max_new_tokens: number of tokens to append (>= 0).
        context_size: the model's context length; the input is cropped to it.
        temperature: 0 for greedy decoding; > 0 scales the logits (below 1 sharper, above 1 flatter).
        top_k: keep only the k most likely tokens per row (k >= 1; of tied logits the lowest ids);
            None or k >= V: no filtering.
        top_p: keep the smallest set of tokens with total probability >= top_p, in (0, 1].
        eos_id: a row that produces this id stops; later positions of that row are filled with
            eos_id while the other rows go on; generation ends when every row has stopped.
        rng: generator for sampling; None uses a fresh unseeded one (not reproducible).

    Returns:
        int64 array (B, T + n) with n <= max_new_tokens (fewer when every row hit eos_id).

    Raises:
        ValueError: empty prompt, wrong rank, max_new_tokens < 0, context_size < 1, top_k < 1,
            temperature < 0 (or NaN, inf), top_p outside (0, 1].
        TypeError: non-integer ids or eos_id.
    """
    ids = _as_id_batch(idx)
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not isinstance(context_size, (int, np.integer)) or context_size < 1:
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
    if rng is None and temperature > 0:
        rng = np.random.default_rng()

    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    finished = np.zeros(ids.shape[0], dtype=bool)  # (B,) rows that have produced eos_id
    try:
        with no_grad():
            for _ in range(max_new_tokens):
                logits = _next_token_logits(model, ids, context_size)  # (B, V)
                if top_k is not None:
                    logits = _filter_top_k(logits, top_k)
                if temperature == 0:
                    next_ids = np.argmax(logits, axis=-1)  # (B,)
                else:
                    scaled = logits.astype(np.float64) / temperature  # float64: exact sampling
                    scaled -= scaled.max(axis=-1, keepdims=True)  # softmax is shift invariant
                    probs = np.exp(scaled)
                    probs /= probs.sum(axis=-1, keepdims=True)
                    if top_p is not None and top_p < 1:
                        probs = _filter_top_p(probs, top_p)
                    # Inverse-CDF sampling, one uniform draw per row.
                    cumulative = np.cumsum(probs, axis=-1)
                    draws = rng.random((ids.shape[0], 1)) * cumulative[:, -1:]
                    next_ids = np.argmax(cumulative > draws, axis=-1)
                if eos_id is not None:
                    next_ids = np.where(finished, eos_id, next_ids)
                    finished |= next_ids == eos_id
                ids = np.concatenate([ids, next_ids[:, None].astype(np.int64)], axis=1)  # (B, T) -> (B, T+1)
                if eos_id is not None and finished.all():
                    break
    finally:
        if was_training:
            model.train()
    return ids
