"""Fused neural-network functions, each one operation with a hand-derived backward rule.

Each function here could be written from the primitive ops of `ops.py` (the tests do exactly
that and compare values and gradients). Fusing them into one `Function` keeps the graph small,
saves only the arrays the derivative needs (not every temporary of the composed version) and lets
the backward pass use the closed-form derivative, which is both faster and more accurate.
The names and arguments follow `torch.nn.functional`.

Shape letters: B batch, T tokens, C channels (emb_dim), H heads, D head size (C / H), V vocabulary,
N rows (B*T flattened).

References: Raschka, "Build a Large Language Model (From Scratch)", chapters 3-5; Karpathy's llm.c
(layernorm backward derivation); PyTorch's torch.nn.functional documentation.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from autograd.parallel import GRAIN_SIZE, parallel_for
from autograd.random import default_generator
from autograd.function import Function
from autograd.tensor import Tensor, as_tensor

__all__ = [
    "softmax",
    "log_softmax",
    "cross_entropy",
    "gelu",
    "layer_norm",
    "dropout",
    "embedding",
    "linear",
    "scaled_dot_product_attention",
    "relu",
    "sigmoid",
    "logsigmoid",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
]


def _elementwise_parallel(kernel, *arrays: np.ndarray) -> None:
    """Run `kernel(*parts)` on matching parts of same-shape arrays, one part per thread.

    `kernel` must be element-wise (each output element depends on the same element of the inputs),
    so any split gives the same result. Arrays that are not all C-contiguous (rare: the inputs
    here come from matrix products) are passed whole in one call.

    NOTE: one large part per thread, not many cache-sized blocks: every ufunc call takes the GIL
    to start, and with blocks of 32768 elements the two threads queued on it (measured on GELU:
    1.7 ms per call in blocks vs 1.1 ms in halves vs 1.8 ms in one thread).
    """
    if not all(array.flags.c_contiguous for array in arrays):
        kernel(*arrays)
        return
    flat = [array.reshape(-1) for array in arrays]  # views, since every array is contiguous

    def run(start: int, stop: int) -> None:
        kernel(*[array[start:stop] for array in flat])

    parallel_for(0, flat[0].size, GRAIN_SIZE, run)


def _axis(dim: int, ndim: int, function: str) -> int:
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{function}: dim={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % max(ndim, 1)


def _shifted_exp(x: np.ndarray, axis: int):
    """exp(x - max) along `axis` and the max, safe for rows that are entirely -inf.

    Softmax is shift invariant (softmax(x) = softmax(x - c)), so subtracting the row maximum
    changes nothing but keeps exp from overflowing. A row of only -inf (everything masked) has
    max -inf; using 0 instead makes every exp(-inf) = 0 rather than exp(nan).
    """
    row_max = np.max(x, axis=axis, keepdims=True)
    row_max[~np.isfinite(row_max)] = 0
    shifted = x - row_max
    np.exp(shifted, out=shifted)
    return shifted, row_max


# --------------------------------------------------------------------------------------------
# softmax and log_softmax
# --------------------------------------------------------------------------------------------


class Softmax(Function):
    """probs = exp(x - max) / sum(exp(x - max)) along `dim`.

    Backward (the softmax Jacobian is diag(p) - p p^T):
        dx = p * (dout - sum(dout * p, dim))
    where p = 0 (a -inf input) the gradient is exactly 0. A row that is entirely -inf gives
    probabilities 0 (not NaN) and gradient 0.
    """

    def forward(self, x, dim):
        self.axis = _axis(dim, x.ndim, "softmax")
        exps, _ = _shifted_exp(x, self.axis)
        total = np.sum(exps, axis=self.axis, keepdims=True)
        total[total == 0] = 1  # all -inf row: 0 / 1 = 0 instead of 0 / 0
        exps /= total
        self.probs = exps
        return exps

    def backward(self, dout):
        probs = self.probs
        return probs * (dout - np.sum(dout * probs, axis=self.axis, keepdims=True))


def softmax(x: Tensor, dim: int) -> Tensor:
    """Softmax along `dim`: non-negative values that sum to 1 (book ch. 3.3.1, eq. of listing 3.x).

    Args:
        x: float tensor of any shape; -inf entries (masked positions) get probability 0.
        dim: the dimension that sums to 1 (negative counts from the end).

    Returns:
        A tensor of x's shape and dtype.

    Raises:
        IndexError: `dim` out of range.

    References: torch.nn.functional.softmax; Bridle 1990.
    """
    return Softmax.apply(as_tensor(x), dim=dim)


class LogSoftmax(Function):
    """out = x - logsumexp(x) along `dim`, with logsumexp(x) = max + log(sum(exp(x - max))).

    Backward: dx = dout - softmax(x) * sum(dout, dim). At a -inf input (a masked position) the
    output is the constant -inf, so its gradient is set to exactly 0; a row of only -inf gives
    -inf everywhere (never NaN) and zero gradient.
    """

    def forward(self, x, dim):
        self.axis = _axis(dim, x.ndim, "log_softmax")
        exps, row_max = _shifted_exp(x, self.axis)
        total = np.sum(exps, axis=self.axis, keepdims=True)
        # A row of only -inf has total 0: log(1) = 0 keeps its output -inf (log of probability 0)
        # instead of -inf - (-inf) = NaN.
        total[total == 0] = 1
        out = x - row_max - np.log(total)
        if any(self.needs_input_grad):
            self.probs = exps / total
            self.masked = np.isneginf(x)
        return out

    def backward(self, dout):
        dx = dout - self.probs * np.sum(dout, axis=self.axis, keepdims=True)
        dx[self.masked] = 0
        return dx


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """Logarithm of the softmax along `dim`, computed stably with log-sum-exp.

    Args:
        x: float tensor; dim: the normalised dimension.

    Returns:
        A tensor of x's shape and dtype; -inf entries stay -inf (log of probability 0) and get
        zero gradient.

    References: torch.nn.functional.log_softmax.
    """
    return LogSoftmax.apply(as_tensor(x), dim=dim)


# --------------------------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------------------------


class CrossEntropy(Function):
    """loss_i = logsumexp(logits_i) - logits_i[target_i]   (negative log-likelihood of the target).

    Backward: dlogits_i = (softmax(logits_i) - onehot(target_i)) * dout_i, and 0 for rows whose
    target is `ignore_index`; with reduction "mean", dout_i = dout / (number of counted rows).
    Ignored rows touch neither the loss nor any gradient, whatever they hold: -inf for a banned
    token or NaN gives the same loss as any finite logits (as PyTorch).

    NOTE: the logits are the largest array of a small GPT's step (N x V, e.g. 512 x 50257). So that
    no second array of that size is made, forward writes its probabilities straight into the
    gradient for dout = 1 and saves it read-only; backward hands it on unchanged when dout is 1
    (the usual `loss.backward()`) and scales a copy otherwise. Without a gradient (evaluation)
    only one small block of scratch memory per thread is used.
    """

    def forward(self, logits, targets, ignore_index, reduction):
        num_rows, num_classes = logits.shape
        rows = np.arange(num_rows)
        counted = targets != ignore_index
        safe_targets = np.where(counted, targets, 0)
        count = int(counted.sum())
        needs_grad = any(self.needs_input_grad)
        # d result / d loss_i: 1/count for the mean, 1 for sum and none, 0 for ignored rows.
        row_weight = counted.astype(logits.dtype)
        if reduction == "mean" and count:
            row_weight *= logits.dtype.type(1.0 / count)
        dlogits = np.empty_like(logits) if needs_grad else None
        log_sum_exp = np.empty(num_rows, dtype=logits.dtype)
        # Blocks of rows small enough (about 1 MiB) to stay in the CPU cache through the five
        # passes below (max, subtract, exp, sum, scale), instead of streaming the whole
        # N x V array from memory five times.
        block = max(1, (1 << 18) // num_classes)

        def blocks(first: int, last: int) -> None:  # blocks first..last-1, each independent
            scratch = None if needs_grad else np.empty((min(block, num_rows), num_classes), dtype=logits.dtype)
            # An ignored row may hold inf or NaN (a banned token): its arithmetic is discarded below,
            # so its warnings are silenced here (this thread's own error state).
            with np.errstate(invalid="ignore", over="ignore"):
                rows_of_blocks(first, last, scratch)

        def rows_of_blocks(first: int, last: int, scratch) -> None:
            for start in range(first * block, min(last * block, num_rows), block):
                stop = min(start + block, num_rows)
                logits_block = logits[start:stop]  # (b, V)
                row_max = np.max(logits_block, axis=1, keepdims=True)
                row_max[~np.isfinite(row_max)] = 0  # a row of only -inf: exp gives 0, not NaN
                exps = dlogits[start:stop] if needs_grad else scratch[: stop - start]
                np.subtract(logits_block, row_max, out=exps)  # softmax is shift invariant
                np.exp(exps, out=exps)
                total = np.sum(exps, axis=1, keepdims=True)
                with np.errstate(divide="ignore"):
                    log_sum_exp[start:stop] = (row_max + np.log(total))[:, 0]
                if needs_grad:
                    exps *= row_weight[start:stop, None] / total  # probabilities, times d result / d loss_i

        # Each thread takes a run of blocks (at least GRAIN_SIZE elements): rows are independent.
        parallel_for(0, -(-num_rows // block), max(1, GRAIN_SIZE // (block * max(num_classes, 1))), blocks)
        # (N,), 0 at ignored rows, whatever their logits hold (NOTE: not "* counted": inf * 0 is NaN)
        with np.errstate(invalid="ignore"):
            losses = np.where(counted, log_sum_exp - logits[rows, safe_targets], 0).astype(logits.dtype, copy=False)
        if reduction == "mean":
            # The mean of an empty set is NaN, as in PyTorch; its gradient is 0.
            result = np.divide(losses.sum(), count) if count else np.array(np.nan, dtype=logits.dtype)
        elif reduction == "sum":
            result = losses.sum()
        else:
            result = losses
        self.reduction = reduction
        if needs_grad:
            if count < num_rows:
                dlogits[~counted] = 0  # an ignored row's gradient is 0 even where its logits are inf or NaN
            dlogits[rows, safe_targets] -= row_weight  # (p - onehot(target)) * weight
            dlogits.flags.writeable = False
            self.dlogits = dlogits  # gradient of the result for dout = 1 (per row for "none")
        return np.asarray(result, dtype=logits.dtype)

    def backward(self, dout):
        if self.reduction == "none":
            return self.dlogits * dout[:, None], None
        if dout == 1:
            return self.dlogits, None
        return self.dlogits * dout, None


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
    loss = CrossEntropy.apply(flat_logits, Tensor._make(flat_targets, False), ignore_index=ignore_index, reduction=reduction)
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

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715  # Hendrycks & Gimpel 2016, section 2: the tanh approximation's constant
_erf = np.vectorize(math.erf, otypes=[np.float64])


class Gelu(Function):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016).

    approximate="tanh" (GPT-2 and the book, ch. 4.3):
        out = 0.5 x (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)
        dx  = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
    approximate="none" (exact):
        out = 0.5 x (1 + erf(x / sqrt 2)),  dx = dout * (Phi(x) + x phi(x))
    """

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            # t = tanh(u) is saved for backward; the element-wise passes are shared among the threads.
            t, out = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
            _elementwise_parallel(_gelu_tanh_forward, x, t, out)
            self.t = t
            return out
        # NOTE: NumPy has no vectorised erf; math.erf per element is exact but slow. GPT-2 uses tanh.
        self.cdf = (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)
        return x * self.cdf

    def backward(self, dout):
        x = self.x
        if self.approximate == "tanh":
            dx = np.empty(x.shape, x.dtype)
            _elementwise_parallel(_gelu_tanh_backward, x, self.t, dout, dx)
            return dx
        pdf = (np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)).astype(x.dtype)
        return dout * (self.cdf + x * pdf)


def _gelu_tanh_forward(x: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:
    """Write t = tanh(u) and out = 0.5 x (1 + t) for one block; each line is one in-place pass."""
    dtype = x.dtype.type
    np.multiply(x, x, out=t)
    t *= dtype(_SQRT_2_OVER_PI * _GELU_CUBIC)
    t += dtype(_SQRT_2_OVER_PI)
    t *= x  # u = sqrt(2/pi) (x + 0.044715 x^3)
    np.tanh(t, out=t)  # t = tanh(u)
    np.add(t, dtype(1.0), out=out)
    out *= x
    out *= dtype(0.5)  # 0.5 x (1 + t)


def _gelu_tanh_backward(x: np.ndarray, t: np.ndarray, dout: np.ndarray, dx: np.ndarray) -> None:
    """Write dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx) for one block."""
    dtype = x.dtype.type
    du_dx = x * x
    du_dx *= dtype(3 * _SQRT_2_OVER_PI * _GELU_CUBIC)
    du_dx += dtype(_SQRT_2_OVER_PI)  # du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    np.multiply(t, t, out=dx)
    np.subtract(dtype(1.0), dx, out=dx)  # 1 - t^2 = dtanh/du
    dx *= x
    dx *= du_dx  # x (1 - t^2) du/dx
    dx += t
    dx += dtype(1.0)
    dx *= dtype(0.5)  # 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx
    dx *= dout


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
    return Gelu.apply(x, approximate=approximate)


# --------------------------------------------------------------------------------------------
# layer_norm
# --------------------------------------------------------------------------------------------


class LayerNorm(Function):
    """out = (x - mean) * rstd * weight + bias over the last dimension (C).

    mean and the *biased* variance (divide by C, as GPT-2 and PyTorch do) are per row;
    rstd = 1 / sqrt(var + eps); x_hat = (x - mean) * rstd.

    Backward, with dx_hat = dout * weight (derivation as in llm.c's layernorm tutorial):
        dweight = sum over rows of dout * x_hat
        dbias   = sum over rows of dout
        dx      = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
    Inputs: x, weight, bias (`layer_norm` passes constants 1 and 0 for an omitted weight or bias).
    """

    def forward(self, x, weight, bias, eps):
        channels = x.shape[-1]
        rows_x = x.reshape(-1, channels)  # (N, C); a view when x is contiguous
        x_hat = np.empty(rows_x.shape, x.dtype)
        rstd = np.empty((rows_x.shape[0], 1), x.dtype)
        out = np.empty(rows_x.shape, x.dtype)
        dtype = x.dtype.type

        def rows(start: int, stop: int) -> None:  # each row is normalised on its own
            x_rows, x_hat_rows, out_rows = rows_x[start:stop], x_hat[start:stop], out[start:stop]
            mean = np.mean(x_rows, axis=-1, keepdims=True)
            np.subtract(x_rows, mean, out=x_hat_rows)  # centred; x_hat after the scaling below
            # Row dot products with einsum: one pass and no (N, C) temporary, unlike mean(c * c).
            variance = np.einsum("nc,nc->n", x_hat_rows, x_hat_rows)[:, None] / dtype(channels)
            rstd_rows = rstd[start:stop]
            np.sqrt(variance + dtype(eps), out=rstd_rows)
            np.reciprocal(rstd_rows, out=rstd_rows)  # rstd = 1 / sqrt(var + eps)
            x_hat_rows *= rstd_rows
            np.multiply(x_hat_rows, weight, out=out_rows)
            out_rows += bias

        parallel_for(0, rows_x.shape[0], max(1, GRAIN_SIZE // max(channels, 1)), rows)
        self.x_hat, self.rstd, self.weight = x_hat, rstd, weight
        return out.reshape(x.shape)

    def backward(self, dout):
        x_hat, rstd, weight = self.x_hat, self.rstd, self.weight  # x_hat (N, C), rstd (N, 1)
        channels = x_hat.shape[-1]
        rows_dout = dout.reshape(-1, channels)
        dtype = x_hat.dtype.type
        dx = dweight = dbias = None
        if self.needs_input_grad[0]:
            dx = np.empty(x_hat.shape, x_hat.dtype)

            def rows(start: int, stop: int) -> None:
                x_hat_rows, dx_rows = x_hat[start:stop], dx[start:stop]
                np.multiply(rows_dout[start:stop], weight, out=dx_rows)  # dx_hat = dout * weight
                mean_dx_hat = np.mean(dx_rows, axis=-1, keepdims=True)
                mean_dx_hat_x_hat = np.einsum("nc,nc->n", dx_rows, x_hat_rows)[:, None] / dtype(channels)
                # In dx_hat's buffer: dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
                dx_rows -= mean_dx_hat
                dx_rows -= x_hat_rows * mean_dx_hat_x_hat
                dx_rows *= rstd[start:stop]

            parallel_for(0, x_hat.shape[0], max(1, GRAIN_SIZE // max(channels, 1)), rows)
            dx = dx.reshape(dout.shape)
        # Sums over rows: kept in one thread, so that their order (and result) never changes.
        if self.needs_input_grad[1]:
            dweight = np.einsum("nc,nc->c", rows_dout, x_hat)
        if self.needs_input_grad[2]:
            dbias = np.sum(rows_dout, axis=0)
        return dx, dweight, dbias


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last dimension (Ba et al. 2016; book ch. 4.2).

    Args:
        x: float tensor (..., C).
        weight: the learned scale (C,) (the book's `scale`), or None for 1.
        bias: the learned shift (C,) (the book's `shift`), or None for 0.
        eps: added to the variance (not to the standard deviation) before the square root.

    Returns:
        A tensor of x's shape and dtype: each row has mean `bias` and standard deviation ~`weight`.

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
    return LayerNorm.apply(x, weight, bias, eps=eps)


# --------------------------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------------------------


def dropout_keep_mask(rng: np.random.Generator, shape: tuple, p: float) -> tuple[np.ndarray, float]:
    """Draw which elements dropout keeps: a bool array, True with probability 1 - p.

    Each element compares 16 random bits with round(p * 65536), so the drop probability is p
    rounded to a multiple of 1/65536 (at most 7.7e-6 away); the second return value is that
    probability, p_drawn, and the caller scales by 1 / (1 - p_drawn) so that the expected output
    equals the input exactly. Raw 64-bit words from the generator give four draws each: about
    3x faster than `rng.random(shape, dtype=np.float32) >= p`, which matters for the
    (B, H, T, T) attention weights.

    Args:
        rng: the generator to draw from (its state advances by ceil(size / 4) words).
        shape: the mask's shape. p: drop probability in [0, 1].

    Returns:
        (keep, p_drawn): bool array of `shape`, and the effective drop probability.
    """
    size = int(np.prod(shape))
    threshold = int(round(p * 65536))
    words = rng.bit_generator.random_raw((size + 3) // 4)  # uint64, four 16-bit draws each
    draws = words.view(np.uint16)[:size].reshape(shape)
    return draws >= threshold, threshold / 65536


class Dropout(Function):
    """out = x * keep / (1 - p), keep_i ~ Bernoulli(1 - p)  (inverted dropout).

    Backward: dx = dout * keep / (1 - p). Scaling at training time keeps the expected value of
    each activation unchanged, so evaluation needs no rescaling (Srivastava et al. 2014, sec. 10).
    The mask is saved as bools (1 byte per element), not as a float multiplier.
    """

    def forward(self, x, p, rng):
        self.keep, p_drawn = dropout_keep_mask(rng, x.shape, p)
        self.scale = x.dtype.type(0.0 if p_drawn == 1 else 1.0 / (1.0 - p_drawn))
        out = x * self.scale
        out *= self.keep
        return out

    def backward(self, dout):
        dx = dout * self.scale
        dx *= self.keep
        return dx


def _check_generator(rng, function: str) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{function}: rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def _check_probability(p, name: str, function: str) -> None:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{function}: {name} must be a probability in [0, 1], got {p!r}")


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None) -> Tensor:
    """Zero each element with probability `p` and scale the rest by 1/(1-p) (book ch. 3.5.2).

    Args:
        x: float tensor of any shape.
        p: drop probability in [0, 1] (p=1 zeroes everything).
        training: when False (or p == 0) this is the identity and draws no random numbers.
        rng: the `np.random.Generator` to draw the mask from; None draws from the process-wide
            default generator (`autograd.manual_seed`), as PyTorch's dropout does.

    Returns:
        A tensor of x's shape and dtype.

    Raises:
        ValueError: p outside [0, 1].
        TypeError: rng is not a np.random.Generator.

    References: Srivastava et al. 2014, "Dropout", JMLR 15; torch.nn.functional.dropout.
    """
    _check_probability(p, "p", "dropout")
    x = as_tensor(x)
    if not training or p == 0:
        return x
    if rng is None:
        rng = default_generator()
    _check_generator(rng, "dropout")
    return Dropout.apply(x, p=p, rng=rng)


# --------------------------------------------------------------------------------------------
# embedding
# --------------------------------------------------------------------------------------------


class Embedding(Function):
    """out[b, t] = weight[ids[b, t]]   (a row lookup; book ch. 2.7).

    Backward: dweight[v] = sum of dout[b, t] over all positions with ids[b, t] == v. Repeated ids
    must add up; instead of `np.add.at` (correct but slow) the rows of dout are sorted by id and
    each run of equal ids is summed with one `np.add.reduceat`; only the rows that were looked up
    are written. Inputs: weight (the ids are a constant option).
    """

    def forward(self, weight, ids):
        self.ids, self.weight_shape = ids, weight.shape
        return weight[ids]

    def backward(self, dout):
        vocab_size, channels = self.weight_shape
        flat_ids = self.ids.reshape(-1)
        rows = dout.reshape(-1, channels)
        order = np.argsort(flat_ids, kind="stable")
        sorted_ids = flat_ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        dweight = np.zeros(self.weight_shape, dtype=dout.dtype)
        if len(flat_ids):
            dweight[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
        return dweight


def embedding(ids, weight: Tensor) -> Tensor:
    """Look up rows of `weight` by integer id (torch.nn.functional.embedding).

    Args:
        ids: integer array or Tensor of any shape (e.g. (B, T) token ids).
        weight: float tensor (V, C).

    Returns:
        A tensor of shape ids.shape + (C,), weight's dtype.

    Raises:
        TypeError: ids are not integers. ValueError: an id is outside [0, V) (naming it).

    References: Raschka, ch. 2.7; torch.nn.functional.embedding.
    """
    ids = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    vocab_size = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"embedding: id {int(bad)} is outside the table's range [0, {vocab_size})")
    return Embedding.apply(as_tensor(weight), ids=ids)


# --------------------------------------------------------------------------------------------
# linear
# --------------------------------------------------------------------------------------------


# Up to this many rows, Linear's forward computes (W x^T)^T instead of x W^T. Measured with
# OpenBLAS 0.3.31 on one thread of an AMD EPYC, x W^T / (W x^T)^T in ms: 8 rows of GPT-2 small's
# 768 -> 3072 layer 1.44 / 1.02 (other runs 16.9 / 1.01), 768 -> 768 0.40 / 0.15, the output head
# 768 -> 50257 194 / 130; at 64 rows the two are even.
_FEW_ROWS = 32


class Linear(Function):
    """y = x W^T + b, with weight W of shape (out, in) as in PyTorch.

    Backward, with x and dout flattened to rows (N, in) and (N, out):
        dx = dout W,   dW = dout^T x,   db = sum over rows of dout.
    All three are single 2-D BLAS products or sums over contiguous float32 rows.
    Inputs: x, weight[, bias].
    """

    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        rows = x.reshape(-1, x.shape[-1])  # (N, in)
        if rows.shape[0] <= _FEW_ROWS:
            # The same product as W x^T, transposed back: OpenBLAS runs it 2-17x faster for a
            # few rows (each step of cached generation: N = batch size) than rows @ W^T.
            out = np.ascontiguousarray((weight @ rows.T).T)  # (out, in) @ (in, N) -> (out, N) -> (N, out)
        else:
            out = rows @ weight.T  # (N, in) @ (in, out) -> (N, out)
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, dout):
        x, weight = self.x, self.weight
        rows_dout = dout.reshape(-1, weight.shape[0])  # (N, out)
        dx = dweight = dbias = None
        if self.needs_input_grad[0]:
            dx = (rows_dout @ weight).reshape(x.shape)  # (N, out) @ (out, in) -> (N, in)
        if self.needs_input_grad[1]:
            dweight = rows_dout.T @ x.reshape(-1, x.shape[-1])  # (out, N) @ (N, in)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            dbias = rows_dout.sum(axis=0)
        return dx, dweight, dbias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map y = x W^T + b (torch.nn.functional.linear; book ch. 3.4).

    Args:
        x: float tensor (..., in).
        weight: (out, in).
        bias: (out,) or None.

    Returns:
        A tensor (..., out).

    Raises:
        ValueError: x's last dimension is not `in`, or bias is not (out,).
    """
    x = as_tensor(x)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x of shape {x.shape} needs a last dimension equal to weight's in-features; weight has shape {weight.shape} (out, in)")
    if bias is None:
        return Linear.apply(x, weight)
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    return Linear.apply(x, weight, bias)


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------------------------


# Queries per block of causal attention (see ScaledDotProductAttention). Smaller blocks skip more
# of the masked products but make more, smaller matrix products. Measured, forward + backward of
# 12 heads of 64 on 2 cores: T = 256 (batch 2): one block 12.3 ms, blocks of 256 / 128 / 64 rows
# 12.3 / 10.9 / 12.4 ms; T = 1024: 95.1 ms, then 60.7 / 59.8 / 68.3 ms.
_QUERY_BLOCK = 128


class ScaledDotProductAttention(Function):
    """out = dropout(softmax(mask(q k^T / sqrt(D)))) v  per batch and head.

    Forward (B, H, T, D inputs):
        scores = (q * scale) @ k^T           (B, H, T, T), scale = 1/sqrt(D) (Vaswani et al. eq. 1)
        scores[future] = -inf                causal: token t sees tokens <= t (book ch. 3.5)
        weights = softmax(scores, -1);  kept = dropout(weights)
        out = kept @ v                        (B, H, T, D)
    Backward, reversing each line:
        dv = kept^T @ dout;  dkept = dout @ v^T
        dweights = dkept * dropout_mask
        dscores = weights * (dweights - sum(dweights * weights, -1))   (softmax rule)
        dq = dscores @ k * scale;  dk = dscores^T @ (q * scale)
    Masked scores have weight 0 and so exactly 0 gradient.

    Causal attention skips what the mask hides: the queries are taken in blocks of _QUERY_BLOCK
    rows, and the block of rows [start, stop) meets only keys [0, stop), since every later key is
    masked for all of its rows (weight 0, gradient 0). Each block's lines above are the same; the
    key and value gradients add up over the blocks that see them. For T = 256 this does 3/4 of
    the products and element-wise work of the full T x T matrices, for T = 1024 about 9/16.
    """

    def forward(self, q, k, v, causal, dropout_p, rng):
        dtype = q.dtype.type
        self.scale = dtype(1.0 / math.sqrt(q.shape[-1]))
        # Scaling q (T x D values) instead of the scores (T x T) is the same product, cheaper.
        q_scaled = q * self.scale
        num_queries, num_keys = q.shape[-2], k.shape[-2]
        keep, dropout_scale = None, dtype(1.0)
        if dropout_p > 0:
            # The whole (B, H, T, T) mask, drawn here in one thread: the same draws however the
            # work is split (masked entries get a draw too, as in dropout applied after softmax).
            keep, p_drawn = dropout_keep_mask(rng, q.shape[:-1] + (num_keys,), dropout_p)
            dropout_scale = dtype(0.0 if p_drawn == 1 else 1.0 / (1.0 - p_drawn))
        mask = _causal_mask(num_queries, num_keys, q.dtype) if causal else None
        blocks = _query_blocks(num_queries, num_keys, causal)
        out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)  # (B, H, T, D)
        saved = []
        for start, stop, keys in blocks:
            # (B, H, b, D) @ (B, H, D, keys) -> (B, H, b, keys): this block's queries, the keys it may see.
            weights = q_scaled[..., start:stop, :] @ np.swapaxes(k[..., :keys, :], -1, -2)
            block_keep = keep[..., start:stop, :keys] if keep is not None else None
            kept = np.empty_like(weights) if keep is not None else weights
            block_mask = mask[start:stop, :keys] if mask is not None else None
            _attention_weights(weights, block_mask, kept, block_keep, dropout_scale)
            out[..., start:stop, :] = kept @ v[..., :keys, :]  # (B, H, b, keys) @ (B, H, keys, D)
            saved.append((weights, kept, block_keep))
        self.q_scaled, self.k, self.v, self.blocks, self.saved = q_scaled, k, v, blocks, saved
        self.dropout_scale = dropout_scale
        return out

    def backward(self, dout):
        q_scaled, k, v = self.q_scaled, self.k, self.v
        num_keys = k.shape[-2]
        dq, dk, dv = np.empty_like(q_scaled), None, None
        # Last block first: it sees the most keys (all of them, unless there are more keys than
        # queries), so its key and value gradients start dk and dv; the other blocks add to them.
        for (start, stop, keys), (weights, kept, keep) in reversed(list(zip(self.blocks, self.saved))):
            dout_block = dout[..., start:stop, :]  # (B, H, b, D)
            dv_block = np.swapaxes(kept, -1, -2) @ dout_block  # (B, H, keys, b) @ (B, H, b, D)
            dscores = dout_block @ np.swapaxes(v[..., :keys, :], -1, -2)  # dkept: (B, H, b, keys)
            _attention_scores_gradient(dscores, weights, keep, self.dropout_scale)
            dq[..., start:stop, :] = dscores @ k[..., :keys, :]  # (B, H, b, keys) @ (B, H, keys, D)
            dk_block = np.swapaxes(dscores, -1, -2) @ q_scaled[..., start:stop, :]  # (B, H, keys, D)
            if dk is None and keys == num_keys:
                dk, dv = dk_block, dv_block
                continue
            if dk is None:  # keys after the last query are masked for every query: gradient 0
                dk, dv = np.zeros_like(k), np.zeros_like(v)
            dk[..., :keys, :] += dk_block
            dv[..., :keys, :] += dv_block
        dq *= self.scale  # scores = (scale q) k^T
        return dq, dk, dv


def _query_blocks(num_queries: int, num_keys: int, causal: bool) -> list[tuple[int, int, int]]:
    """(start, stop, keys) per block of query rows: rows [start, stop) meet keys [0, keys).

    One block with every key unless causal; causal blocks of _QUERY_BLOCK rows see the keys up to
    their last row (top-left aligned, as torch's is_causal: query i sees keys <= i). The last block
    always sees all the keys any block sees.
    """
    if not causal or num_queries <= _QUERY_BLOCK:
        return [(0, num_queries, num_keys)]
    return [(start, min(start + _QUERY_BLOCK, num_queries), min(start + _QUERY_BLOCK, num_queries, num_keys))
            for start in range(0, num_queries, _QUERY_BLOCK)]


def _attention_weights(scores: np.ndarray, mask, kept: np.ndarray, keep, dropout_scale) -> None:
    """In place: scores (..., b, keys) -> softmax(scores + mask); kept = weights * keep * scale.

    Every (batch, head) matrix is independent: the element-wise passes are shared among the
    threads by heads; the matrix products around them already use every core through BLAS.
    """
    heads_scores, heads_kept = _by_head(scores), _by_head(kept)
    heads_keep = _by_head(keep) if keep is not None else None

    def heads(start: int, stop: int) -> None:
        weights = heads_scores[start:stop]  # (h, b, keys): scores, in place -> weights
        if mask is not None:
            weights += mask  # future -> -inf
        _softmax_last_axis_in_place(weights)
        if heads_keep is not None:
            kept_part = heads_kept[start:stop]
            np.multiply(weights, dropout_scale, out=kept_part)
            kept_part *= heads_keep[start:stop]

    parallel_for(0, heads_scores.shape[0], _heads_grain(heads_scores), heads)


def _attention_scores_gradient(dkept: np.ndarray, weights: np.ndarray, keep, dropout_scale) -> None:
    """In place: dkept (..., b, keys) -> dscores, through the dropout and the softmax rule."""
    heads_dscores, heads_weights = _by_head(dkept), _by_head(weights)
    heads_keep = _by_head(keep) if keep is not None else None

    def heads(start: int, stop: int) -> None:
        dscores, weights_part = heads_dscores[start:stop], heads_weights[start:stop]  # (h, b, keys)
        if heads_keep is not None:
            dscores *= dropout_scale  # through the dropout: kept = weights * keep * scale
            dscores *= heads_keep[start:stop]
        # Softmax rule, in place: dscores = weights * (dweights - sum(dweights * weights, -1)).
        row_dot = np.einsum("hij,hij->hi", dscores, weights_part)[..., None]  # (h, b, 1)
        dscores -= row_dot
        dscores *= weights_part

    parallel_for(0, heads_dscores.shape[0], _heads_grain(heads_dscores), heads)


def _by_head(array: np.ndarray) -> np.ndarray:
    """(..., T_q, T_k) as (G, T_q, T_k), G the product of the batch dimensions.

    A view for the arrays written here (results of matrix products and fresh allocations, so
    C-contiguous: writing through it writes `array`); the dropout mask, only read, may be a
    block cut out of a larger array and may be copied.
    """
    return array.reshape((math.prod(array.shape[:-2]),) + array.shape[-2:])


def _heads_grain(heads: np.ndarray) -> int:
    """The fewest (T_q, T_k) matrices worth a thread of their own: GRAIN_SIZE elements."""
    return max(1, GRAIN_SIZE // max(heads.shape[-1] * heads.shape[-2], 1))


def _softmax_last_axis_in_place(scores: np.ndarray) -> None:
    """Overwrite `scores` with softmax(scores) along the last axis (see Softmax and _shifted_exp)."""
    row_max = np.max(scores, axis=-1, keepdims=True)
    row_max[~np.isfinite(row_max)] = 0  # a row with every key masked gives weights 0
    scores -= row_max
    np.exp(scores, out=scores)
    total = np.sum(scores, axis=-1, keepdims=True)
    total[total == 0] = 1
    scores *= np.reciprocal(total)


def _causal_mask(num_queries: int, num_keys: int, dtype) -> np.ndarray:
    """(T_q, T_k) additive mask: 0 where query i may see key j (j <= i), -inf above the diagonal.

    Adding -inf before the softmax gives those keys weight exactly 0 (book ch. 3.5.1).
    """
    return np.triu(np.full((num_queries, num_keys), -np.inf, dtype=dtype), k=1)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, dropout_p: float = 0.0, rng: np.random.Generator | None = None) -> Tensor:
    """Scaled dot-product attention, fused into one op (Vaswani et al. 2017, eq. 1; book ch. 3.4-3.6).

    Args:
        q, k, v: float tensors (..., T, D) of one dtype, usually (B, H, T, D).
        causal: hide future keys (top-left aligned, as torch's is_causal: query i sees keys <= i).
        dropout_p: dropout probability on the attention weights (training only: pass 0.0 in eval).
        rng: generator for the dropout mask; None draws from the default generator (manual_seed).

    Returns:
        A tensor (..., T, D): each query's weighted average of the values.

    Raises:
        ValueError: mismatched shapes, no keys (T_k = 0), head size 0, dropout_p outside [0, 1],
            (no rng is needed: the default generator is used).
        TypeError: causal is not a bool; q, k, v are not of one float dtype; rng is not a
            np.random.Generator.

    References: torch.nn.functional.scaled_dot_product_attention (is_causal, dropout_p).
    """
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"scaled_dot_product_attention: causal must be True or False, got {causal!r}")
    if q.dtype.kind != "f" or not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"scaled_dot_product_attention: q, k, v must share one float dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim < 2 or k.shape != v.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
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
        rng = default_generator()  # as torch: the default generator (autograd.manual_seed)
    if dropout_p > 0:
        _check_generator(rng, "scaled_dot_product_attention")
    return ScaledDotProductAttention.apply(q, k, v, causal=causal, dropout_p=dropout_p, rng=rng)


# --------------------------------------------------------------------------------------------
# sigmoid, log-sigmoid and the losses of chapter 4 and appendix A (binary cross-entropy, MSE)
# --------------------------------------------------------------------------------------------

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, function: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{function}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    """The elementwise `loss` averaged, summed or kept (torch's `reduction=`), in its dtype."""
    if reduction == "none":
        return loss
    total = loss.sum() if reduction == "sum" else loss.mean()
    return np.asarray(total, dtype=loss.dtype)


def _unreduce(dout: np.ndarray, reduction: str, shape: tuple) -> np.ndarray:
    """d(reduced loss)/d(elementwise loss) times dout: the backward of `_reduce`, of `shape`."""
    if reduction == "none":
        return dout
    count = math.prod(shape)
    scale = dout if reduction == "sum" else dout / dout.dtype.type(max(count, 1))
    return np.broadcast_to(scale, shape)


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x| <= 0."""
    e = np.exp(-np.abs(x))  # in (0, 1]
    one = x.dtype.type(1)
    return np.where(x >= 0, one / (one + e), e / (one + e))


class Sigmoid(Function):
    """out = sigmoid(x) = 1 / (1 + exp(-x)).   dx = dout * out * (1 - out).

    Computed as 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 with e = exp(-|x|), so no exp
    overflows for large |x|. The output is saved: the derivative is a function of it.
    """

    def forward(self, x):
        self.out = _stable_sigmoid(x)
        return self.out

    def backward(self, dout):
        return dout * self.out * (1 - self.out)


class LogSigmoid(Function):
    """out = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)).   dx = dout * sigmoid(-x).

    The min/log1p form is exact for large |x| where log(sigmoid(x)) would give log(0) = -inf
    (x = -200) or lose every digit (x = 40). sigmoid(-x) = 1 - sigmoid(x) is computed stably too.
    """

    def forward(self, x):
        self.x = x
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))

    def backward(self, dout):
        return dout * _stable_sigmoid(-self.x)


def sigmoid(x: Tensor) -> Tensor:
    """The logistic function 1 / (1 + exp(-x)), elementwise (torch.sigmoid, appendix A.3).

    Args:
        x: float tensor of any shape.

    Returns:
        A tensor of x's shape and dtype, values in [0, 1].

    References: torch.nn.functional.sigmoid; book appendix A.3 (logistic regression).
    """
    return Sigmoid.apply(as_tensor(x))


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)), elementwise and stable for large |x| (torch.nn.functional.logsigmoid).

    Used by the DPO loss (book ch. 7 bonus). Returns a tensor of x's shape and dtype, values <= 0.
    """
    return LogSigmoid.apply(as_tensor(x))


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


class BinaryCrossEntropy(Function):
    """L = -(y log p + (1 - y) log(1 - p)) per element, then reduced; y is a constant.

    Each log is clamped at -100 as PyTorch does, so p = 0 or 1 gives a finite loss.
    dp = dout * (p - y) / max(p (1 - p), 1e-12) (PyTorch's epsilon), which is the derivative of
    the unclamped formula.
    """

    def forward(self, p, y, reduction):
        self.p, self.y, self.reduction = p, y, reduction
        low = p.dtype.type(-100)
        with np.errstate(divide="ignore"):  # log(0) = -inf is clamped to -100 on the next line
            log_p, log_not_p = np.log(p), np.log1p(-p)
        loss = -(y * np.maximum(log_p, low) + (1 - y) * np.maximum(log_not_p, low))
        return _reduce(loss, reduction)

    def backward(self, dout):
        p, y = self.p, self.y
        dloss = _unreduce(dout, self.reduction, p.shape)
        return (dloss * (p - y) / np.maximum(p * (1 - p), p.dtype.type(1e-12)), None)


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
    return BinaryCrossEntropy.apply(input, target, reduction=reduction)


class BinaryCrossEntropyWithLogits(Function):
    """L = max(x, 0) - x y + log1p(exp(-|x|)) = -(y log sigmoid(x) + (1 - y) log sigmoid(-x)).

    The max/log1p form never overflows and keeps every digit for large |x| (a sigmoid followed by
    `binary_cross_entropy` saturates at p = 1 for x > 17 in float32).
    dx = dout * (sigmoid(x) - y), computed as (1 - y) sigmoid(x) - y sigmoid(-x): the same value,
    but for y = 1 and large x it keeps -sigmoid(-x) = -e^-x instead of rounding 1 - 1 to 0.
    """

    def forward(self, x, y, reduction):
        self.x, self.y, self.reduction = x, y, reduction
        loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        return _reduce(loss, reduction)

    def backward(self, dout):
        dloss = _unreduce(dout, self.reduction, self.x.shape)
        x, y = self.x, self.y
        return (dloss * ((1 - y) * _stable_sigmoid(x) - y * _stable_sigmoid(-x)), None)


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
    return BinaryCrossEntropyWithLogits.apply(input, target, reduction=reduction)


class MSELoss(Function):
    """L = (x - y)^2 per element, then reduced.   dx = dout * 2 (x - y), dy = -dx.

    Both operands may require gradients (PyTorch allows it); the difference is saved.
    """

    def forward(self, x, y, reduction):
        self.difference, self.reduction = x - y, reduction
        return _reduce(self.difference * self.difference, reduction)

    def backward(self, dout):
        dx = _unreduce(dout, self.reduction, self.difference.shape) * (2 * self.difference)
        return (dx if self.needs_input_grad[0] else None, -dx if self.needs_input_grad[1] else None)


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
    return MSELoss.apply(input, target, reduction=reduction)
