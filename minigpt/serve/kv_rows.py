"""Rows in and out of a running KV cache: what lets requests join a batch between two steps.

The chapter-4 bonus cache (`GPTModel.reset_kv_cache`, `forward(..., use_cache=True)`) holds one
batch whose rows are right-aligned: row b's first `left_padding[b]` slots are padding, hidden
from every query, and its positions count from its first real token. That layout is what makes
rows movable:

- a row can be dropped (its slice of every layer's cache_k / cache_v is left out);
- all rows can be shifted left by the smallest padding (`compact`), freeing slots at the end;
- all rows can be shifted right (more padding in front) so that a new prompt longer than the
  tokens cached so far fits beside them;
- new rows are prefilled in a cache of their own (padded to the same number of slots) and
  stacked under the old ones.

Shifting changes no row's positions (a position is slot - left_padding), so every row computes
exactly what it would alone. This module edits the cache attributes that `MultiHeadAttention`
documents (cache_k, cache_v: (B, H, max_seq_len, D); ptr_current_pos; max_seq_len) and
`GPTModel`'s (current_pos, left_padding).

Shape letters: B rows, H heads, S cache slots, D head size, T prompt tokens, V vocabulary.

References: the book's ch. 4 bonus KV cache (ch04/03_kv-cache); Yu et al. 2022, "Orca: A
Distributed Serving System for Transformer-Based Generative Models" (iteration-level
scheduling: requests join and leave a batch between steps).
"""

from __future__ import annotations

import numpy as np


def _layers(model):
    return [block.att for block in model.trf_blocks]


def cached_rows(model) -> int:
    """How many rows the model's KV cache holds now (0 when empty)."""
    cache = _layers(model)[0].cache_k
    return 0 if cache is None or model.current_pos == 0 else cache.shape[0]


def rebuild(model, keep: np.ndarray, new_ids: np.ndarray | None, new_padding: np.ndarray | None, capacity: int):
    """Keep some cached rows, add prefilled new rows, and size the cache to `capacity` slots.

    Args:
        model: a GPTModel whose cache holds the current batch (or nothing).
        keep: int indices (K,) of the cached rows to keep, in their new order.
        new_ids: None, or int ids (N, T) of new prompts, right-aligned (left-padded).
        new_padding: ints (N,): the padding in front of each new prompt.
        capacity: the slots to reserve (at most the context); it is raised to the slots in use.

    Returns:
        The new rows' next-token logits, float (N, V), or None without new rows. Afterwards the
        cache holds K + N rows (the kept ones first) over max(kept slots, T) slots.
    """
    layers = _layers(model)
    old_slots = model.current_pos if cached_rows(model) else 0
    old_padding = model.left_padding if model.left_padding is not None else np.zeros(cached_rows(model), np.int64)
    old_k = [layer.cache_k for layer in layers] if old_slots else None
    old_v = [layer.cache_v for layer in layers] if old_slots else None
    keep = np.asarray(keep, np.int64)
    kept_padding = old_padding[keep] if old_slots else np.zeros(0, np.int64)
    trim = int(kept_padding.min()) if keep.size else old_slots  # slots in front that no kept row uses
    kept_slots = old_slots - trim
    new_logits = None
    slots = kept_slots
    if new_ids is not None:
        slots = max(kept_slots, new_ids.shape[1])
        front = slots - new_ids.shape[1]  # more padding in front of new prompts shorter than the kept rows
        model.reset_kv_cache(slots, np.asarray(new_padding, np.int64) + front)
        ids = np.concatenate([np.zeros((new_ids.shape[0], front), np.int64), new_ids], axis=1)  # (N, slots)
        new_logits = model(ids, use_cache=True, last_only=True).data[:, -1, :]  # (N, slots) -> (N, V)
        new_k = [layer.cache_k for layer in layers]
        new_v = [layer.cache_v for layer in layers]
        new_padding = model.left_padding if model.left_padding is not None else np.zeros(len(new_ids), np.int64)
    capacity = max(min(capacity, model.cfg.context_length), slots)
    shift = slots - kept_slots  # kept rows move right when a new prompt is longer than they are
    padding = [kept_padding - trim + shift]
    for number, layer in enumerate(layers):
        stacks = []
        for cache_old, cache_new in ((old_k, new_k if new_ids is not None else None), (old_v, new_v if new_ids is not None else None)):
            reference = cache_new[number] if cache_new is not None else cache_old[number]
            rows = keep.size + (0 if new_ids is None else len(new_ids))
            cache = np.zeros((rows, reference.shape[1], capacity, reference.shape[3]), reference.dtype)  # (B, H, S, D)
            if keep.size:
                cache[:keep.size, :, shift:slots] = cache_old[number][keep, :, trim:old_slots]
            if new_ids is not None:
                cache[keep.size:, :, :slots] = cache_new[number][:, :, :slots]
            stacks.append(cache)
        layer.cache_k, layer.cache_v = stacks
        layer.ptr_current_pos, layer.max_seq_len = slots, capacity
    if new_ids is not None:
        padding.append(new_padding)
    padding = np.concatenate(padding).astype(np.int64)
    model.current_pos = slots
    model.left_padding = padding if padding.any() else None
    return new_logits


def cache_capacity(model) -> int:
    """The slots each layer's cache has room for (its max_seq_len)."""
    return int(_layers(model)[0].max_seq_len)
