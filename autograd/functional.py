"""The fused neural-network functions, as torch.nn.functional: check the arguments, run the op.

Each function validates its arguments (an exception naming the argument, what was expected and
what came), then runs one fused `Function` with a hand-derived backward rule. Which version of
that Function runs is the switch's (`autograd/kernels.py`): the reference kernels of
`autograd/reference/` (plain NumPy, one file per layer: what a learner reads and steps into) or
the fast kernels of `autograd/fast/` (blocked, in place, threaded; the default). Both compute the
same values (tests/test_kernels.py). Each function could also be written from the primitive ops of
`ops.py` (the tests do exactly that and compare values and gradients); fusing keeps the graph
small, saves only what the derivative needs, and uses the closed-form derivative.

Shape letters: B batch, T tokens, C channels (emb_dim), H heads, D head size (C / H), V vocabulary,
N rows (B*T flattened).

References: Raschka, "Build a Large Language Model (From Scratch)", chapters 3-5; Karpathy's llm.c
(layernorm backward derivation); PyTorch's torch.nn.functional documentation.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from autograd import kernels
from autograd.ops import Pad
from autograd.reference.dropout import dropout_keep_mask
from autograd.random import Generator, default_generator
from autograd.tensor import Tensor, _softmax, as_tensor

__all__ = [
    "one_hot",
    "pad",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "gelu",
    "layer_norm",
    "dropout",
    "dropout_keep_mask",
    "embedding",
    "linear",
    "scaled_dot_product_attention",
    "relu",
    "sigmoid",
    "logsigmoid",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "rms_norm",
    "silu",
    "apply_rope",
]


# --------------------------------------------------------------------------------------------
# softmax and log_softmax
# --------------------------------------------------------------------------------------------


def softmax(x: Tensor, dim: int) -> Tensor:
    """Softmax along `dim`: non-negative values that sum to 1 (book ch. 3.3.1, eq. of listing 3.x).

    Args:
        x: float tensor of any shape; -inf entries (masked positions) get probability 0.
        dim: the dimension that sums to 1 (negative counts from the end).

    Returns:
        A tensor of x's shape and dtype (a 0-d x gives 1.0, as PyTorch).

    Raises:
        TypeError: x is not a float tensor ("softmax: input must be a float tensor, got int64"),
            or `dim` is not an int.
        IndexError: `dim` out of range.

    References: torch.nn.functional.softmax; Bridle 1990.
    """
    return _softmax("Softmax", "softmax", as_tensor(x), dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """Logarithm of the softmax along `dim`, computed stably with log-sum-exp.

    Args:
        x: float tensor; dim: the normalised dimension.

    Returns:
        A tensor of x's shape and dtype; -inf entries stay -inf (log of probability 0) and get
        zero gradient. A 0-d x gives 0.0, as PyTorch.

    Raises:
        TypeError: x is not a float tensor, or `dim` is not an int. IndexError: `dim` out of range.

    References: torch.nn.functional.log_softmax.
    """
    return _softmax("LogSoftmax", "log_softmax", as_tensor(x), dim)


# --------------------------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Cross-entropy between logits and integer class targets (book ch. 5.1.2).

    Which dimension holds the classes (C), as in PyTorch: dimension 1. So logits (N, C) go with
    targets (N,), and 3-D logits (B, C, T) with targets (B, T) (PyTorch's layout for a loss at
    every position). minigpt also accepts the book's model output (B, T, C) with targets (B, T),
    but only where that reading is the only one: when C == T both readings fit the shapes, and
    then dimension 1 is the classes, as PyTorch reads it. So a language model's loss should
    flatten first, as the book does (ch. 5.1.2): `cross_entropy(logits.flatten(0, 1),
    targets.flatten())`, which is right whatever the context length and vocabulary size; every
    loss inside minigpt does so.

    Args:
        logits: float tensor (N, C), (B, C, T), or (B, T, C) with T != C: unnormalised scores over
            C classes (the vocabulary for a language model).
        targets: integer array or Tensor (N,) or (B, T) of class indices in [0, C), or
            `ignore_index` for positions that do not count (padding in fine-tuning, ch. 7).
        ignore_index: the target value to skip.
        reduction: "mean" over the counted targets only, "sum", or "none" (one loss per target,
            shape of `targets`, 0 at ignored ones).

    Returns:
        A 0-d tensor (mean, sum) or a tensor of the targets' shape (none), dtype of the logits.

    Raises:
        ValueError: logits not 2-D or 3-D, no classes (C = 0), shapes that fit no layout above, a
            target outside [0, C) and not ignore_index, or an unknown reduction. TypeError: targets
            are not integers, logits are not floats, or ignore_index is not an int.

    References: torch.nn.functional.cross_entropy (the same class dimension, ignore_index and mean
    semantics).
    """
    logits = as_tensor(logits)
    target_array = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if target_array.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got dtype {target_array.dtype}")
    if logits.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be a float tensor, got dtype {logits.dtype}")
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"cross_entropy: ignore_index must be an int, got {ignore_index!r}")
    if logits.ndim not in (2, 3):
        raise ValueError(f"cross_entropy: logits must be (N, C), (B, C, T) or (B, T, C), got shape {logits.shape}")
    class_dim = _class_dim(logits.shape, target_array.shape)
    if logits.shape[class_dim] == 0:
        raise ValueError(f"cross_entropy: logits need at least one class (C >= 1), got shape {logits.shape}")
    if logits.ndim == 3 and class_dim == 1:
        logits = logits.transpose(1, 2)  # (B, C, T) -> (B, T, C): one row of classes per target
    num_classes = logits.shape[-1]
    flat_targets = target_array.reshape(-1).astype(np.int64)
    bad = (flat_targets != ignore_index) & ((flat_targets < 0) | (flat_targets >= num_classes))
    if bad.any():
        raise ValueError(
            f"cross_entropy: target {int(flat_targets[bad][0])} is outside [0, {num_classes}) "
            f"and is not ignore_index ({ignore_index})"
        )
    flat_logits = logits.reshape(-1, num_classes) if logits.ndim == 3 else logits  # (B*T, C)
    loss = kernels.get("CrossEntropy").apply(flat_logits, Tensor._make(flat_targets, False), ignore_index=ignore_index, reduction=reduction)
    if reduction == "none":
        loss = loss.reshape(target_array.shape)
    return loss


def _class_dim(logits_shape: tuple, targets_shape: tuple) -> int:
    """The dimension of the logits that holds the classes: 1 (PyTorch's), or 2 for the book's
    (B, T, C) when only that reading fits the targets' shape (see `cross_entropy`)."""
    if len(logits_shape) == 2:
        expected = logits_shape[:1]
        if targets_shape == expected:
            return 1
    else:
        batch, second, third = logits_shape
        if targets_shape == (batch, third):
            return 1  # (B, C, T), PyTorch's reading; also when C == T, where (B, T, C) would fit too
        if targets_shape == (batch, second):
            return 2  # (B, T, C), the book's model output; the only reading, as second != third here
        expected = f"{(batch, third)} (logits (B, C, T)) or {(batch, second)} (logits (B, T, C))"
    raise ValueError(
        f"cross_entropy: logits of shape {logits_shape} need targets of shape {expected}; "
        f"got targets of shape {targets_shape}"
    )


# --------------------------------------------------------------------------------------------
# GELU
# --------------------------------------------------------------------------------------------


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """Gaussian error linear unit, elementwise (book ch. 4.3, the FeedForward activation).

    Args:
        x: float tensor of any shape.
        approximate: "tanh" (GPT-2's and the book's formula, the default here) or "none" (exact,
            with erf; slow on large arrays). NOTE: torch.nn.functional.gelu defaults to "none".

    Returns:
        A tensor of x's shape and dtype.

    Raises:
        ValueError: unknown `approximate`. TypeError: x is not a float tensor.

    References: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", section 2.
    """
    if approximate not in ("tanh", "none"):
        raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"gelu: x must be a float tensor, got dtype {x.dtype}")
    return kernels.get("Gelu").apply(x, approximate=approximate)


# --------------------------------------------------------------------------------------------
# layer_norm
# --------------------------------------------------------------------------------------------


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last dimension (Ba et al. 2016; book ch. 4.2).

    Args:
        x: float tensor (..., C).
        weight: the learned scale (C,) (the book's `scale`), or None for 1.
        bias: the learned shift (C,) (the book's `shift`), or None for 0.
        eps: added to the variance (not to the standard deviation) before the square root.

    Returns:
        A tensor of x's shape and dtype: each row (the last dimension) is normalised to mean 0 and
        variance 1 (up to eps), then each channel c is scaled by weight[c] and shifted by bias[c].

    Raises:
        ValueError: x has no channels (0-d or C = 0); weight or bias is not of shape (C,); eps is
            not a finite number >= 0.
        TypeError: x is not a float tensor, or weight / bias has another dtype than x.

    References: Ba, Kiros & Hinton 2016, "Layer Normalization", eq. 4; torch.nn.functional.layer_norm.
    """
    x = as_tensor(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"layer_norm: x needs a last dimension of at least one channel, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"layer_norm: x must be a float tensor, got dtype {x.dtype}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"layer_norm: eps must be a finite number >= 0, got {eps!r}")
    channels = x.shape[-1]
    weight = None if weight is None else as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and tuple(value.shape) != (channels,):
            raise ValueError(f"layer_norm: {name} must have shape ({channels},) for x of shape {x.shape}, got {tuple(value.shape)}")
        if value is not None and value.dtype != x.dtype:
            raise TypeError(f"layer_norm: {name} has dtype {value.dtype} but x has {x.dtype}; use one dtype (model.to(dtype) converts a model)")
    # An omitted weight or bias is a constant 1 or 0 (no gradient), so one op covers all cases.
    weight = Tensor._make(np.ones(channels, dtype=x.dtype), False) if weight is None else weight
    bias = Tensor._make(np.zeros(channels, dtype=x.dtype), False) if bias is None else bias
    return kernels.get("LayerNorm").apply(x, weight, bias, eps=eps)


# --------------------------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------------------------


def _check_generator(rng, function: str) -> None:
    if not isinstance(rng, (Generator, np.random.Generator)):
        raise TypeError(f"{function}: rng must be an autograd.Generator or a np.random.Generator, got {type(rng).__name__}")


def _check_probability(p, name: str, function: str) -> None:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{function}: {name} must be a probability in [0, 1], got {p!r}")


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability `p` and scale the rest by 1/(1-p) (book ch. 3.5.2).

    Args:
        x: float tensor of any shape.
        p: drop probability in [0, 1] (p=1 zeroes everything).
        training: when False (or p == 0) this is the identity and draws no random numbers.
        rng: the generator of the mask (an `autograd.Generator`, or a `np.random.Generator` for
            NumPy's streams); None draws from the process-wide default generator
            (`autograd.manual_seed`). With an `autograd.Generator` the mask is PyTorch's CPU
            mask bit for bit: `empty_like(x).bernoulli_(1 - p)`, scaled by 1 / (1 - p).

    Returns:
        A tensor of x's shape and dtype.

    Raises:
        ValueError: p outside [0, 1].
        TypeError: rng is not a generator; x is not a float tensor when elements are
            dropped (training and p > 0; as PyTorch, which returns x unchanged otherwise).

    References: Srivastava et al. 2014, "Dropout", JMLR 15; torch.nn.functional.dropout.
    """
    _check_probability(p, "p", "dropout")
    x = as_tensor(x)
    if not training or p == 0:
        return x
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: x must be a float tensor (the kept values are scaled by 1/(1-p)), got dtype {x.dtype}")
    if rng is None:
        rng = default_generator
    _check_generator(rng, "dropout")
    return kernels.get("Dropout").apply(x, p=p, rng=rng)


# --------------------------------------------------------------------------------------------
# embedding
# --------------------------------------------------------------------------------------------


def embedding(ids, weight: Tensor) -> Tensor:
    """Look up rows of `weight` by integer id (torch.nn.functional.embedding).

    Args:
        ids: integer array or Tensor of any shape (e.g. (B, T) token ids).
        weight: float tensor (V, C).

    Returns:
        A tensor of shape ids.shape + (C,), weight's dtype.

    Raises:
        TypeError: ids are not integers; weight is not a Tensor or np.ndarray.
        ValueError: weight is not 2-D; an id is outside [0, V) (naming it).

    References: Raschka, ch. 2.7; torch.nn.functional.embedding.
    """
    weight = _weight_tensor(weight, "weight", "embedding")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    ids = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    vocab_size = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"embedding: id {int(bad)} is outside the table's range [0, {vocab_size})")
    return kernels.get("Embedding").apply(weight, ids=ids)


def _weight_tensor(value, name: str, function: str) -> Tensor:
    """A learned table or matrix (`weight`, `bias`) as a Tensor: a Tensor itself, an np.ndarray
    wrapped by `as_tensor` (a constant); TypeError naming the argument for anything else."""
    if not isinstance(value, (Tensor, np.ndarray)):
        raise TypeError(f"{function}: {name} must be a Tensor (or np.ndarray), got {type(value).__name__}")
    return as_tensor(value)


# --------------------------------------------------------------------------------------------
# linear
# --------------------------------------------------------------------------------------------


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map y = x W^T + b (torch.nn.functional.linear; book ch. 3.4).

    Args:
        x: float tensor (..., in) (or anything `as_tensor` takes).
        weight: Tensor (out, in) of x's dtype; an np.ndarray is wrapped as a constant.
        bias: Tensor (out,) of x's dtype, or None; an np.ndarray is wrapped as a constant.

    Returns:
        A tensor (..., out), x's dtype.

    Raises:
        ValueError: weight is not 2-D, x's last dimension is not `in`, or bias is not (out,).
        TypeError: weight or bias is not a Tensor (or np.ndarray); x is not a float tensor; weight
            or bias has another dtype than x (as PyTorch: "mat1 and mat2 must have the same dtype").

    References: torch.nn.functional.linear.
    """
    x = as_tensor(x)
    weight = _weight_tensor(weight, "weight", "linear")
    bias = None if bias is None else _weight_tensor(bias, "bias", "linear")
    if x.dtype.kind != "f":
        raise TypeError(f"linear: x must be a float tensor, got dtype {x.dtype}")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.dtype != x.dtype:
            raise TypeError(f"linear: {name} has dtype {value.dtype} but x has {x.dtype}; use one dtype (model.to(dtype) converts a model)")
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x of shape {x.shape} needs a last dimension equal to weight's in-features; weight has shape {weight.shape} (out, in)")
    if bias is None:
        return kernels.get("Linear").apply(x, weight)
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return kernels.get("Linear").apply(x, weight, bias)


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------------------------


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool | None = None, scale: float | None = None, *, causal: bool | None = None,
                                 rng=None) -> Tensor:
    """Scaled dot-product attention, fused into one op (Vaswani et al. 2017, eq. 1; book ch. 3.4-3.6).

    softmax(q k^T * scale + mask) v, with PyTorch's arguments; without `attn_mask` and `scale` it
    runs the fused kernel, with them the same formula from recorded ops (matmul, masked_fill,
    softmax, dropout), so gradients flow either way.

    Args:
        q, k, v: float tensors (..., T, D) of one dtype, usually (B, H, T, D).
        attn_mask: None, a bool mask (True: the query may attend to the key) or a float mask added
            to the scores, broadcastable to (..., T_q, T_k) (torch's attn_mask).
        dropout_p: dropout probability on the attention weights (training only: pass 0.0 in eval).
        is_causal: hide future keys (top-left aligned: query i sees keys <= i), PyTorch's name;
            `causal` is minigpt's spelling of the same flag. Neither given: False, as in PyTorch.
        scale: the factor of the scores; None is 1/sqrt(D).
        rng: generator for the dropout mask; None draws from the default generator (manual_seed).

    Returns:
        A tensor (..., T, D): each query's weighted average of the values.

    Raises:
        ValueError: mismatched shapes, no keys (T_k = 0), head size 0, dropout_p outside [0, 1],
            (no rng is needed: the default generator is used).
        TypeError: causal is not a bool; q, k, v are not of one float dtype; rng is not an
            autograd.Generator or np.random.Generator.
        ValueError: both attn_mask and is_causal (as PyTorch), or is_causal and causal disagree.

    References: torch.nn.functional.scaled_dot_product_attention (attn_mask, dropout_p,
    is_causal, scale).
    """
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    if is_causal is not None and causal is not None and bool(is_causal) != bool(causal):
        raise ValueError(f"scaled_dot_product_attention: is_causal={is_causal} and causal={causal} disagree; give one")
    causal = is_causal if is_causal is not None else causal if causal is not None else False
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"scaled_dot_product_attention: causal must be True or False, got {causal!r}")
    if q.dtype.kind != "f" or not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"scaled_dot_product_attention: q, k, v must share one float dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim < 2 or k.ndim < 2 or k.shape != v.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape} must be (..., T, D) "
            "with equal batch dimensions and head size, and k, v of one shape"
        )
    if k.shape[-2] == 0:
        raise ValueError(f"scaled_dot_product_attention: k and v need at least one token to attend to, got k of shape {k.shape}")
    if q.shape[-1] == 0:
        raise ValueError(f"scaled_dot_product_attention: the head size D (last dimension) must be at least 1, got q of shape {q.shape}")
    _check_probability(dropout_p, "dropout_p", "scaled_dot_product_attention")
    if dropout_p > 0 and rng is None:
        rng = default_generator  # as torch: the default generator (autograd.manual_seed)
    if dropout_p > 0:
        _check_generator(rng, "scaled_dot_product_attention")
    if attn_mask is not None or scale is not None:
        return _attention_from_ops(q, k, v, attn_mask, dropout_p, causal, scale, rng)
    return kernels.get("ScaledDotProductAttention").apply(q, k, v, causal=causal, dropout_p=dropout_p, rng=rng)


def _attention_from_ops(q: Tensor, k: Tensor, v: Tensor, attn_mask, dropout_p: float, causal: bool, scale, rng) -> Tensor:
    """softmax(q k^T * scale + mask) v from recorded ops: `scaled_dot_product_attention` with a mask
    or a scale of its own (the fused kernel knows only the causal mask and 1/sqrt(D))."""
    if causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: give attn_mask or is_causal=True, not both (as PyTorch)")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if causal:
        scores = scores.masked_fill(np.triu(np.ones(scores.shape[-2:], dtype=bool), 1), -math.inf)
    if attn_mask is not None:
        mask = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype == np.bool_ else scores + as_tensor(attn_mask, like=q)
    weights = softmax(scores, dim=-1)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p, training=True, rng=rng)
    return weights @ v  # (..., T_q, D)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor (..., num_classes) with a 1 at each id's position (torch.nn.functional.one_hot).

    Args:
        tensor: non-negative integer ids, any shape.
        num_classes: the length of the last dimension; -1 is the largest id + 1.

    Raises:
        ValueError: ids that are not non-negative integers or not below num_classes.
    """
    ids = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if ids.dtype.kind not in "iu" or (ids.size and ids.min() < 0):
        raise ValueError(f"one_hot: expected non-negative integer ids, got dtype {ids.dtype}")
    classes = int(ids.max()) + 1 if num_classes == -1 and ids.size else num_classes
    if ids.size and ids.max() >= classes:
        raise ValueError(f"one_hot: id {int(ids.max())} does not fit num_classes={classes}")
    return Tensor._make((ids[..., None] == np.arange(classes)).astype(np.int64), False)


def pad(input: Tensor, pad: tuple, mode: str = "constant", value: float = 0.0) -> Tensor:  # noqa: A002
    """Pad with `value` around the last dimensions (torch.nn.functional.pad, mode "constant").

    Args:
        input: a tensor.
        pad: (left, right) for the last dimension, then (top, bottom) for the one before, ...
            as PyTorch orders them; negative widths crop.
        mode: only "constant".
        value: the fill value.

    Raises:
        ValueError: an odd number of widths, more pairs than dimensions, or another mode.
    """
    input = as_tensor(input)
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: expected pairs of widths for at most {input.ndim} dimensions, got {tuple(pad)}")
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]
    widths = [(0, 0)] * (input.ndim - len(pairs)) + pairs[::-1]  # PyTorch lists the last dimension first
    return Pad.apply(input, widths=tuple(widths), value=value)


# --------------------------------------------------------------------------------------------
# sigmoid, log-sigmoid and the losses of chapter 4 and appendix A (binary cross-entropy, MSE)
# --------------------------------------------------------------------------------------------

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, function: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{function}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def sigmoid(x: Tensor) -> Tensor:
    """The logistic function 1 / (1 + exp(-x)), elementwise (torch.sigmoid, appendix A.3).

    Args:
        x: float tensor of any shape.

    Returns:
        A tensor of x's shape and dtype, values in [0, 1].

    References: torch.nn.functional.sigmoid; book appendix A.3 (logistic regression).
    """
    return kernels.get("Sigmoid").apply(as_tensor(x))


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)), elementwise and stable for large |x| (torch.nn.functional.logsigmoid).

    Used by the DPO loss (book ch. 7 bonus). Returns a tensor of x's shape and dtype, values <= 0.
    """
    return kernels.get("LogSigmoid").apply(as_tensor(x))


def relu(x: Tensor) -> Tensor:
    """max(x, 0), elementwise (torch.nn.functional.relu; the gradient at 0 is 0, as PyTorch)."""
    return as_tensor(x).relu()


def _loss_target(target, like: Tensor, function: str) -> Tensor:
    """The target as a constant tensor of `like`'s float dtype, broadcastable to `like`."""
    target = as_tensor(target, like=like)
    if target.requires_grad:
        raise NotImplementedError(f"{function}: a target that requires grad is not supported (detach() it)")
    if target.shape != like.shape:
        raise ValueError(
            f"{function}: target has shape {target.shape} but input has {like.shape}; "
            "they must be the same (as PyTorch requires for this loss)"
        )
    return target.to(like.dtype)


def binary_cross_entropy(input: Tensor, target, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Binary cross-entropy between probabilities `input` and targets in [0, 1] (appendix A.3).

    loss = -(y log(p) + (1 - y) log(1 - p)), each log clamped at -100 (as PyTorch).

    Args:
        input: probabilities p in [0, 1], float tensor of any shape (e.g. a sigmoid's output).
        target: y, same shape (array, list or tensor; cast to input's dtype; no gradient).
        reduction: 'mean' (default), 'sum' or 'none' (the elementwise losses).

    Returns:
        A scalar tensor, or input's shape for reduction='none'.

    Raises:
        ValueError: input outside [0, 1], shapes differ, or an unknown reduction.
        NotImplementedError: target requires grad.

    References: torch.nn.functional.binary_cross_entropy; book appendix A.3 and A.4.
    """
    _check_reduction(reduction, "binary_cross_entropy")
    input = as_tensor(input)
    if input.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy: input must be floating point, got {input.dtype}")
    if input.data.size and not (np.all(input.data >= 0) and np.all(input.data <= 1)):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1 (apply sigmoid first, or use binary_cross_entropy_with_logits)")
    target = _loss_target(target, input, "binary_cross_entropy")
    return kernels.get("BinaryCrossEntropy").apply(input, target, reduction=reduction)


def binary_cross_entropy_with_logits(input: Tensor, target, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Binary cross-entropy of sigmoid(input) against `target`, computed stably from the logits.

    Args:
        input: logits x, float tensor of any shape.
        target: y in [0, 1], same shape (no gradient).
        reduction: 'mean' (default), 'sum' or 'none'.

    Returns:
        A scalar tensor, or input's shape for reduction='none'.

    Raises:
        ValueError: shapes differ or an unknown reduction. NotImplementedError: target requires grad.

    References: torch.nn.functional.binary_cross_entropy_with_logits (without weight/pos_weight).
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    input = as_tensor(input)
    if input.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy_with_logits: input must be floating point, got {input.dtype}")
    target = _loss_target(target, input, "binary_cross_entropy_with_logits")
    return kernels.get("BinaryCrossEntropyWithLogits").apply(input, target, reduction=reduction)


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error between `input` and `target` (chapter 4's print_gradients uses nn.MSELoss).

    Args:
        input: float tensor of any shape.
        target: same shape (a tensor that may require grad, or data cast to input's dtype).
        reduction: 'mean' (default), 'sum' or 'none'.

    Returns:
        A scalar tensor, or input's shape for reduction='none'.

    Raises:
        ValueError: shapes differ (PyTorch broadcasts with a warning that it is likely a bug; here it
            is an error) or an unknown reduction. TypeError: non-float input or mixed float dtypes.

    References: torch.nn.functional.mse_loss; book ch. 4.4 (print_gradients).
    """
    _check_reduction(reduction, "mse_loss")
    input = as_tensor(input)
    if input.dtype.kind != "f":
        raise TypeError(f"mse_loss: input must be floating point, got {input.dtype}")
    target = as_tensor(target, like=input)
    if target.shape != input.shape:
        raise ValueError(f"mse_loss: target has shape {target.shape} but input has {input.shape}; they must be the same")
    if not target.requires_grad:
        target = target.to(input.dtype)
    elif target.dtype != input.dtype:
        raise TypeError(f"mse_loss: input is {input.dtype} but target is {target.dtype}; use one dtype")
    return kernels.get("MSELoss").apply(input, target, reduction=reduction)


# --------------------------------------------------------------------------------------------
# Llama 3 and Qwen3 (issue 23): rms_norm, silu, apply_rope
# --------------------------------------------------------------------------------------------


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:  # noqa: A002
    """Root-mean-square normalisation over the last dimensions (Llama's and Qwen3's norm).

        out = x / sqrt(mean(x^2) + eps) * weight,   the mean over the `normalized_shape` dimensions

    Args:
        input: float tensor (..., *normalized_shape).
        normalized_shape: an int or a tuple of the trailing dimensions normalised together (C,).
        weight: the learned scale, of shape normalized_shape and input's dtype, or None for 1.
        eps: added to the mean square before the square root; None: the machine epsilon of
            input's dtype (torch.finfo(dtype).eps), as PyTorch.

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        ValueError: input's trailing dimensions are not normalized_shape; weight's shape is not
            normalized_shape; eps not a finite number >= 0.
        TypeError: input is not a float tensor, or weight has another dtype.

    References: Zhang & Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4;
    torch.nn.functional.rms_norm.
    """
    x = as_tensor(input)
    if x.dtype.kind != "f":
        raise TypeError(f"rms_norm: input must be a float tensor, got dtype {x.dtype}")
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    if not shape or x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape or 0 in shape:
        raise ValueError(f"rms_norm: input's last dimensions must be normalized_shape {shape} (none 0), got input of shape {x.shape}")
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"rms_norm: eps must be a finite number >= 0 or None, got {eps!r}")
    channels = math.prod(shape)
    if weight is not None:
        weight = as_tensor(weight)
        if tuple(weight.shape) != shape:
            raise ValueError(f"rms_norm: weight must have shape {shape} (normalized_shape), got {tuple(weight.shape)}")
        if weight.dtype != x.dtype:
            raise TypeError(f"rms_norm: weight has dtype {weight.dtype} but input has {x.dtype}; use one dtype")
        weight = weight.reshape(channels) if len(shape) > 1 else weight
    else:  # an omitted weight is a constant 1 (no gradient), so one op covers both cases
        weight = Tensor._make(np.ones(channels, dtype=x.dtype), False)
    if len(shape) == 1:
        return kernels.get("RMSNorm").apply(x, weight, eps=eps)
    rows = x.reshape(*x.shape[:x.ndim - len(shape)], channels)  # several dims normalised as one
    return kernels.get("RMSNorm").apply(rows, weight, eps=eps).reshape(*x.shape)


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """SiLU (swish), x * sigmoid(x), elementwise: the activation of Llama's and Qwen3's SwiGLU.

    Args:
        input: float tensor of any shape.
        inplace: must be False (accepted for PyTorch's signature; a new tensor is returned).

    Returns:
        A tensor of input's shape and dtype.

    Raises:
        TypeError: input is not a float tensor. ValueError: inplace=True.

    References: Elfwing et al. 2018 (SiLU); Shazeer 2020 (SwiGLU); torch.nn.functional.silu.
    """
    if inplace:
        raise ValueError("silu: inplace=True is not supported (it would break the gradient of input); use inplace=False")
    x = as_tensor(input)
    if x.dtype.kind != "f":
        raise TypeError(f"silu: input must be a float tensor, got dtype {x.dtype}")
    return kernels.get("Silu").apply(x)


def apply_rope(x: Tensor, cos, sin, offset=0) -> Tensor:
    """Rotate queries or keys by their positions' angles: rotary position embeddings, one fused op.

        out = x * cos[p] + rotate_half(x) * sin[p],   rotate_half(x) = concat(-x2, x1)

    for each token at position p (the split-halves layout of Hugging Face and the book).

    Args:
        x: float tensor (B, H, T, D) (any (..., T, D)), D even.
        cos, sin: the tables of `minigpt.nn.rope.compute_rope_params`, (context_length, D), Tensors
            or arrays; constants (no gradient).
        offset: the position of x's first token: an int (the tokens are at offset ... offset+T-1,
            the book's KV-cache `offset`/`start_pos`), or an int array of positions, (T,) or
            (B, T) (one row of positions per batch row, for left-padded batches).

    Returns:
        A tensor of x's shape and dtype; the tables are cast to x's dtype.

    Raises:
        ValueError: x not at least 2-D or D odd; cos/sin not (L, D) of the same shape; positions
            outside [0, L) (offset + T > L: the context is exceeded); a (B, T) offset with x not
            4-D or another B or T.
        TypeError: x not a float tensor; offset neither an int nor an integer array.

    References: Su et al. 2021, "RoFormer", eq. 34; Raschka, LLMs-from-scratch
    pkg/llms_from_scratch/llama3.py and kv_cache/qwen3.py (`apply_rope(x, cos, sin, offset)`);
    Hugging Face `apply_rotary_pos_emb`.
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"apply_rope: x must be a float tensor, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[-1] % 2:
        raise ValueError(f"apply_rope: x must be (..., num_tokens, head_dim) with an even head_dim, got shape {x.shape}")
    cos = np.asarray(cos.data if isinstance(cos, Tensor) else cos)
    sin = np.asarray(sin.data if isinstance(sin, Tensor) else sin)
    num_tokens, head_dim = x.shape[-2], x.shape[-1]
    if cos.ndim != 2 or cos.shape != sin.shape or cos.shape[1] != head_dim:
        raise ValueError(f"apply_rope: cos and sin must both be (context_length, {head_dim}), got {cos.shape} and {sin.shape}")
    positions = _rope_positions(offset, num_tokens, x.shape, cos.shape[0])
    cos, sin = cos[positions].astype(x.dtype, copy=False), sin[positions].astype(x.dtype, copy=False)  # (T, D) or (B, T, D)
    if cos.ndim == 3:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D): the same rotation for every head
    return kernels.get("Rope").apply(x, cos=cos, sin=sin)


def _rope_positions(offset, num_tokens: int, shape: tuple, context_length: int):
    """The positions of x's tokens: a slice for an int offset, else the checked int array."""
    if isinstance(offset, numbers.Integral) and not isinstance(offset, bool):
        if offset < 0 or offset + num_tokens > context_length:
            raise ValueError(f"apply_rope: positions {offset} ... {offset + num_tokens - 1} are outside the "
                             f"tables' context_length {context_length}")
        return slice(int(offset), int(offset) + num_tokens)
    positions = np.asarray(offset.data if isinstance(offset, Tensor) else offset)
    if positions.dtype.kind not in "iu":
        raise TypeError(f"apply_rope: offset must be an int or an integer array of positions, got {offset!r}")
    if positions.shape != (num_tokens,) and not (positions.ndim == 2 and len(shape) == 4 and positions.shape == (shape[0], num_tokens)):
        raise ValueError(f"apply_rope: positions must be ({num_tokens},) or (batch, {num_tokens}) for x of shape {shape}, "
                         f"got {positions.shape}")
    if positions.size and (positions.min() < 0 or positions.max() >= context_length):
        raise ValueError(f"apply_rope: positions must be in [0, {context_length}), got {positions.min()} ... {positions.max()}")
    return positions
