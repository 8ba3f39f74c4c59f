"""Gradient checking: compare the engine's analytic gradients with central finite differences.

For a function f of tensors and a *random* upstream gradient `dout`, the scalar
    L(x) = sum(f(x) * dout)
has the gradient that backward computes from `f(x).backward(dout)`. Each element of it is also
    dL/dx_i ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)          (central difference, error O(eps^2)).
A random `dout` matters: with the plain sum of the outputs (dout = 1) a softmax has zero gradient
whatever its backward rule computes, and a layer norm with unit scale too, so errors in exactly the
ops a GPT needs would go unseen.

References: PyTorch's torch.autograd.gradcheck; Baydin et al. 2018, "Automatic Differentiation in
Machine Learning: a Survey", section 2; tinygrad's and minitorch's test suites.
"""

from __future__ import annotations

import numpy as np

from autograd.function import no_grad
from autograd.tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by `gradcheck` when an analytic gradient disagrees with the finite difference."""


def _outputs(fn, inputs) -> list:
    result = fn(*inputs)
    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    for i, output in enumerate(outputs):
        if not isinstance(output, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor or a tuple of Tensors, output {i} is {type(output).__name__}")
    return outputs


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    max_elements: int | None = None,
) -> bool:
    """Check the analytic gradient of `fn` at `inputs` against central finite differences.

    Args:
        fn: callable taking the tensors in `inputs` and returning a Tensor or a tuple of Tensors.
            It may also read other tensors (for example a model's parameters passed as inputs):
            the check perturbs each input's `.data` in place and restores it.
        inputs: a Tensor or a sequence of Tensors; those with `requires_grad=True` are checked and
            must be float64 (float32 rounding, about 1e-7 relative, swamps a 1e-6 step).
        eps: the finite-difference step, in the inputs' units.
        atol, rtol: an element passes when |analytic - numeric| <= atol + rtol * |numeric|.
        seed: seeds the random upstream gradient and the element sample.
        max_elements: check at most this many elements of each input, drawn at random (for large
            inputs such as a model's weights); None checks every element.

    Returns:
        True when every checked element passes.

    Raises:
        GradcheckError: naming the input, the worst element, the analytic and numeric values.
        TypeError: an input to check is not a float64 Tensor, or fn returns something else.
        ValueError: no input requires a gradient.

    Example:
        >>> x = tensor(np.random.rand(3, 4), dtype=np.float64, requires_grad=True)
        >>> gradcheck(lambda x: (x * x).sum(dim=1), [x])
        True

    References: torch.autograd.gradcheck (same tolerance rule).
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 inputs "
                "(float32 rounding is larger than the finite-difference signal)"
            )
    rng = np.random.default_rng(seed)

    # Analytic gradients: backward of sum(f(x) * dout) for a random dout per output.
    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    outputs = _outputs(fn, inputs)
    upstream = [rng.standard_normal(out.shape).astype(out.dtype) if out.dtype.kind == "f" else None for out in outputs]
    loss = None
    for out, dout in zip(outputs, upstream):
        if dout is None or not out.requires_grad:
            continue
        term = (out * Tensor(dout)).sum()
        loss = term if loss is None else loss + term
    analytic = {}
    if loss is not None:
        loss.backward()
    for position, i in enumerate(checked):
        grad = inputs[i].grad
        analytic[i] = np.zeros(inputs[i].shape) if grad is None else grad.copy()
        inputs[i].grad = saved_grads[position]

    def objective() -> float:
        with no_grad():
            outs = _outputs(fn, inputs)
        return float(sum(np.sum(o.data * d) for o, d in zip(outs, upstream) if d is not None))

    for i in checked:
        data = inputs[i].data
        if not data.flags.c_contiguous:
            raise TypeError(f"gradcheck: input {i} is not contiguous; pass a contiguous array")
        flat = data.reshape(-1)  # a view: perturbing it perturbs the input in place
        elements = np.arange(flat.size)
        if max_elements is not None and flat.size > max_elements:
            elements = rng.choice(flat.size, size=max_elements, replace=False)
        numeric = np.zeros(len(elements))
        for n, element in enumerate(elements):
            original = flat[element]
            flat[element] = original + eps
            plus = objective()
            flat[element] = original - eps
            minus = objective()
            flat[element] = original
            numeric[n] = (plus - minus) / (2 * eps)
        expected = analytic[i].reshape(-1)[elements]
        error = np.abs(expected - numeric)
        allowed = atol + rtol * np.abs(numeric)
        if not np.all(error <= allowed) or not np.all(np.isfinite(expected)):
            worst = int(np.nanargmax(np.where(np.isfinite(error), error - allowed, np.inf)))
            index = np.unravel_index(elements[worst], data.shape)
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {data.shape}) at element {tuple(int(k) for k in index)}: "
                f"analytic gradient {expected[worst]!r}, numeric (central difference) {numeric[worst]!r}, "
                f"difference {error[worst]:.3g} > allowed {allowed[worst]:.3g} "
                f"(atol={atol}, rtol={rtol}, eps={eps}); {int(np.sum(~(error <= allowed)))} of "
                f"{len(elements)} checked elements fail"
            )
    return True
