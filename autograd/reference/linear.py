"""Linear, the affine map of every projection in the model (book ch. 3.4), in plain NumPy.

Shape letters: (..., in) inputs, usually (B, T, C); N rows when the leading dimensions are
flattened (N = B * T); `in` and `out` the layer's features.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Linear", "linear_torch_name"]


def linear_torch_name(ndim: int, has_bias: bool) -> str:
    """The `grad_fn` name PyTorch 2.13 prints for F.linear on an input of `ndim` dimensions:
    AddmmBackward0 (2-D, bias) or MmBackward0 (2-D); for other ranks PyTorch folds the input into
    a matrix and views the result back (ViewBackward0 with a bias, UnsafeViewBackward0 without;
    SqueezeBackward4 for a 1-D input without bias)."""
    if ndim == 2:
        return "AddmmBackward0" if has_bias else "MmBackward0"
    if ndim == 1 and not has_bias:
        return "SqueezeBackward4"
    return "ViewBackward0" if has_bias else "UnsafeViewBackward0"


class Linear(Function):
    """y = x W^T + b, with the weight W of shape (out, in) as in PyTorch.

    Derivative, with x and dout flattened to rows (N, in) and (N, out):
        dx = dout W,   dW = dout^T x,   db = sum over rows of dout

    Args (of `forward`):
        x: float array (..., in). weight: (out, in), x's dtype. bias: (out,) or omitted (None).

    Returns:
        out: array (..., out), x's dtype. `backward(dout)` returns (dx (..., in), dweight
        (out, in), dbias (out,) or None), None for an input that needs no gradient.

    Raises: nothing of its own: `autograd.functional.linear` checks the shapes.

    References: Raschka, "Build a Large Language Model (From Scratch)", ch. 3.4 (the query, key
    and value projections) and appendix A; torch.nn.functional.linear.
    """

    @classmethod
    def torch_name_of(cls, inputs, options):
        """PyTorch's name: addmm (2-D input with bias) or mm, viewed back for other ranks."""
        return linear_torch_name(inputs[0].ndim, len(inputs) > 2 and inputs[2] is not None)

    def forward(self, x, weight, bias=None):
        out = x @ weight.T  # 1. (..., in) @ (in, out) -> (..., out)
        if bias is not None:
            out = out + bias  # 2. (..., out) + (out,)
        # Saved: x (for dweight) and weight (for dx); both are the inputs themselves, no copies.
        self.x, self.weight = x, weight
        return out

    def backward(self, dout):
        x, weight = self.x, self.weight  # (..., in), (out, in)
        rows_dout = dout.reshape(-1, weight.shape[0])  # (N, out)
        dx = dweight = dbias = None
        # 2. reverses out = out + bias: the bias is added to every row.
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            dbias = np.sum(rows_dout, axis=0)  # (N, out) -> (out,)
        # 1. reverses out = x @ weight.T
        if self.needs_input_grad[0]:
            dx = dout @ weight  # (..., out) @ (out, in) -> (..., in)
        if self.needs_input_grad[1]:
            dweight = rows_dout.T @ x.reshape(-1, x.shape[-1])  # (out, N) @ (N, in) -> (out, in)
        return dx, dweight, dbias
