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
        cache holds K + N rows (the kept ones first) over S = max(kept rows' slots, T) slots.
    """
    layers = _layers(model)
    old_rows = cached_rows(model)
    old_slots = model.current_pos if old_rows else 0
    old_padding = model.left_padding if model.left_padding is not None else np.zeros(old_rows, np.int64)
    old_caches = [(layer.cache_k, layer.cache_v) for layer in layers]
    keep = np.asarray(keep, np.int64)
    trim = int(old_padding[keep].min()) if keep.size else old_slots  # front slots no kept row uses
    slots = old_slots - trim
    padding = old_padding[keep] - trim
    new_logits = new_caches = None
    if new_ids is not None:
        slots = max(slots, new_ids.shape[1])
        new_logits, new_caches, new_padding = _prefill(model, new_ids, new_padding, slots)
    shift = slots - (old_slots - trim)  # kept rows move right when a new prompt is longer than they are
    padding = np.concatenate([padding + shift] + ([new_padding] if new_ids is not None else [])).astype(np.int64)
    capacity = max(min(capacity, model.cfg.context_length), slots)
    for number, layer in enumerate(layers):
        merged = []
        for which in (0, 1):  # keys, then values: (B, H, S, D) each
            kept = old_caches[number][which][keep, :, trim:old_slots] if keep.size else None
            new = new_caches[number][which][:, :, :slots] if new_caches is not None else None
            merged.append(_stack(kept, shift, new, capacity))
        layer.cache_k, layer.cache_v = merged
        layer.ptr_current_pos, layer.max_seq_len = slots, capacity
    model.current_pos = slots
    model.left_padding = padding if padding.any() else None
    return new_logits


def _prefill(model, new_ids: np.ndarray, new_padding, slots: int):
    """Run new prompts, padded in front to `slots` columns, into a fresh cache: (logits (N, V),
    [(keys, values) per layer], padding (N,))."""
    front = slots - new_ids.shape[1]  # more padding in front of prompts shorter than the kept rows
    padding = np.asarray(new_padding, np.int64) + front
    model.reset_kv_cache(slots, padding)
    ids = np.concatenate([np.zeros((new_ids.shape[0], front), np.int64), new_ids], axis=1)  # (N, T) -> (N, slots)
    logits = model(ids, use_cache=True, last_only=True).data[:, -1, :]  # (N, slots) -> (N, V)
    return logits, [(layer.cache_k, layer.cache_v) for layer in _layers(model)], padding


def _stack(kept: np.ndarray | None, shift: int, new: np.ndarray | None, capacity: int) -> np.ndarray:
    """Kept rows (K, H, S_k, D) placed at slots [shift, shift + S_k), over new rows (N, H, S, D),
    in an array of `capacity` slots. Unused slots are zeros, not garbage: a hidden slot gets
    attention weight 0, and 0 * NaN would still be NaN."""
    reference = kept if kept is not None else new
    rows = (0 if kept is None else len(kept)) + (0 if new is None else len(new))
    cache = np.zeros((rows, reference.shape[1], capacity, reference.shape[3]), reference.dtype)  # (B, H, S, D)
    if kept is not None:
        cache[:len(kept), :, shift:shift + kept.shape[2]] = kept
    if new is not None:
        cache[rows - len(new):, :, :new.shape[2]] = new
    return cache


def cache_capacity(model) -> int:
    """The slots each layer's cache has room for (its max_seq_len)."""
    return int(_layers(model)[0].max_seq_len)
