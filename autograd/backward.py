"""The backward walk: from a result back to the leaves, calling each operation's backward rule.

`loss.backward()` (in `tensor.py`) calls `_run_backward`, which orders the graph (a reverse
topological order, found iteratively, so that even a 100,000-op chain does not reach Python's
recursion limit), then calls each recorded `Function`'s `backward` once with the total gradient
of its output, and adds the gradients of the leaves into their `.grad`. Nothing else runs in
between: a learner who steps into `loss.backward()` in a debugger reaches an operation's NumPy
`backward` in three frames (`Tensor.backward` -> `_run_backward` -> `SomeOp.backward`).

`grad` is `torch.autograd.grad`: the same walk, with the gradients returned instead of stored.

NOTE: this file does not import `tensor.py` (which imports it); a Tensor is recognised by its
`grad_fn` attribute (`_is_tensor`) and results are built by a tensor's own `_make`.

References: torch.Tensor.backward, torch.autograd.grad; Paszke et al. 2017, "Automatic
differentiation in PyTorch"; Griewank & Walther, "Evaluating Derivatives" (2008), ch. 3.
"""

from __future__ import annotations

import numpy as np


def _is_tensor(value) -> bool:
    """True for an `autograd.Tensor` (or a subclass such as minigpt's Parameter), the objects with
    a `grad_fn` and a `_make`; an `np.ndarray` has neither. Checking attributes instead of the
    class keeps this file below tensor.py, which imports it."""
    return hasattr(value, "grad_fn") and hasattr(value, "_make")


def _topological_order(roots: list) -> list:
    """Tensors reachable from `roots` that require grad, each after every tensor it depends on.

    Iterative depth-first search with an explicit stack (no recursion limit): an operation's
    output is emitted when all its inputs have been emitted. A leaf is emitted just before the
    first operation that uses it, not when the search first meets it, so that the backward walk
    (which runs this order in reverse) reaches the leaf right after the last of its uses and
    completes its `.grad` as early as possible: data-parallel training starts sending finished
    gradients from there (`register_post_accumulate_grad_hook`) while backward goes on.
    """
    order = []
    visited = set()  # ids of operation outputs whose inputs are being searched or done
    emitted_leaves = set()
    stack = [(root, False) for root in reversed(roots)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            for child in node.grad_fn.inputs:  # its leaves, right before their first use
                if child.grad_fn is None and child.requires_grad and id(child) not in emitted_leaves:
                    emitted_leaves.add(id(child))
                    order.append(child)
            order.append(node)
            continue
        if node.grad_fn is None:  # a root that is a leaf
            if id(node) not in emitted_leaves:
                emitted_leaves.add(id(node))
                order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for child in node.grad_fn.inputs:
            if child.requires_grad and child.grad_fn is not None and id(child) not in visited:
                stack.append((child, False))
    return order


def _run_backward(roots: list, gradients: list, retain_graph: bool, captured: dict | None = None) -> None:
    """Propagate `gradients` from `roots` to the leaves (see `Tensor.backward` and `grad`).

    With `captured` (a dict whose keys are the ids of some tensors), the total gradient reaching
    each of those tensors is stored in it instead, and no `.grad` of any tensor is touched.
    """
    order = _topological_order(roots)
    pending = {}  # tensor id -> total gradient received so far
    for root, gradient in zip(roots, gradients):
        previous = pending.get(id(root))
        pending[id(root)] = gradient if previous is None else previous + gradient
    given_to_leaves = set()  # ids of arrays stored as some leaf's .grad in this pass
    for position in range(len(order) - 1, -1, -1):
        node = order[position]
        order[position] = None  # let activations be freed as soon as the walk passes them
        dout = pending.pop(id(node), None)
        if dout is None:
            continue
        if node._hooks:
            for hook in list(node._hooks):
                replaced = hook(dout)
                if replaced is not None:
                    dout = np.asarray(replaced)
        function = node.grad_fn
        if captured is not None:
            if id(node) in captured:
                captured[id(node)] = dout.copy()  # a backward rule may share dout between inputs
            if function is None:
                continue
        elif function is None:
            _accumulate_leaf_grad(node, dout, given_to_leaves)
            if node._post_accumulate_grad_hooks:
                for hook in list(node._post_accumulate_grad_hooks):
                    hook(node)
            continue
        elif node._retains_grad:
            node.grad = dout.copy() if node.grad is None else node.grad + dout
        if function.released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time: the graph of {function.name} "
                "was freed by the first backward(). Pass retain_graph=True to the first call if you "
                "need to call backward twice."
            )
        if tuple([child._version for child in function.inputs]) != function.saved_versions:
            _raise_modified_in_place(function)
        input_grads = function.backward(dout)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for child, child_grad in zip(function.inputs, input_grads):
            if child_grad is None or not child.requires_grad:
                continue
            if child_grad.shape != child.shape or child_grad.dtype != child.dtype:
                raise RuntimeError(
                    f"{function.name}.backward returned a gradient of shape {child_grad.shape} "
                    f"and dtype {child_grad.dtype} for an input of shape {child.shape} and dtype "
                    f"{child.dtype}"
                )
            previous = pending.get(id(child))
            # Out of place: a backward rule may hand the same array to two inputs (Add does).
            pending[id(child)] = child_grad if previous is None else previous + child_grad
        if not retain_graph:
            function.release()


def _raise_modified_in_place(function) -> None:
    """Raise PyTorch's error for an input of `function` changed in place after `function` used it."""
    for number, (child, version) in enumerate(zip(function.inputs, function.saved_versions)):
        if child._version != version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: input {number} of {function.name} (a tensor of shape "
                f"{child.shape} and dtype {child.dtype}) is at version {child._version}; expected "
                f"version {version} instead. Hint: change a clone() of the tensor instead, or make "
                "the in-place change before any operation uses the tensor."
            )


def _initial_gradient(root, gradient) -> np.ndarray:
    """d(loss)/d(root) as an array of root's shape and dtype: ones for one element when omitted."""
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient works only for a tensor with one element; "
                f"this one has shape {root.shape}: pass gradient= of that shape"
            )
        return np.ones_like(root.data)
    gradient = gradient.data if _is_tensor(gradient) else gradient
    gradient = np.array(gradient, dtype=root.dtype, copy=True)
    if gradient.shape != root.shape:
        raise ValueError(f"gradient has shape {gradient.shape}, expected the tensor's shape {root.shape}")
    return gradient


def _as_tensor_tuple(value, argument: str) -> tuple:
    """`value` as a tuple of Tensors (one Tensor, or a list/tuple of them)."""
    items = (value,) if _is_tensor(value) else tuple(value) if isinstance(value, (list, tuple)) else None
    if not items or not all(_is_tensor(item) for item in items):
        raise TypeError(f"grad: {argument} must be a Tensor or a non-empty sequence of Tensors, got {value!r:.80}")
    return items


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, returned rather than stored in `.grad`.

    Computes sum_k d(outputs[k] . grad_outputs[k]) / d(inputs[i]) for each input by the same
    backward walk as `Tensor.backward`, but leaves every tensor's `.grad` untouched (appendix A:
    `grad_L_w1 = grad(loss, w1, retain_graph=True)`).

    Args:
        outputs: a Tensor or a sequence of Tensors to differentiate.
        inputs: a Tensor or a sequence of Tensors (leaves or intermediates) that require grad.
        grad_outputs: the upstream gradient of each output (arrays or Tensors, each of its
            output's shape); None means 1 for outputs with one element.
        retain_graph: keep the graph for another backward; defaults to `create_graph` (False).
        create_graph: must be False: minigpt's backward rules work on plain arrays and build no
            graph, so gradients of gradients are not available.
        allow_unused: return None for an input the outputs do not depend on, instead of raising.

    Returns:
        A tuple with one Tensor (no grad, same shape and dtype as its input) per input.

    Raises:
        TypeError: outputs or inputs are not Tensors.
        RuntimeError: an output or input does not require grad; an input is not reached and
            allow_unused is False; an output with several elements and no grad_output.
        NotImplementedError: create_graph=True.

    References: torch.autograd.grad.
    """
    if create_graph:
        raise NotImplementedError(
            "grad: create_graph=True (higher-order gradients) is not supported: minigpt's backward "
            "rules work on plain NumPy arrays and record no graph"
        )
    outputs = _as_tensor_tuple(outputs, "outputs")
    inputs = _as_tensor_tuple(inputs, "inputs")
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    elif _is_tensor(grad_outputs) or isinstance(grad_outputs, np.ndarray):
        grad_outputs = (grad_outputs,)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for number, tensor_ in enumerate(outputs + inputs):
        if not tensor_.requires_grad:
            kind = "output" if number < len(outputs) else "input"
            raise RuntimeError(f"grad: {kind} {number if number < len(outputs) else number - len(outputs)} does not require grad")
    gradients = [_initial_gradient(output, upstream) for output, upstream in zip(outputs, grad_outputs)]
    captured = {id(tensor_): None for tensor_ in inputs}
    _run_backward(list(outputs), gradients, bool(retain_graph), captured)
    results = []
    for number, tensor_ in enumerate(inputs):
        value = captured[id(tensor_)]
        if value is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {number} is not used to compute the outputs (pass allow_unused=True "
                "to get None for it)"
            )
        results.append(None if value is None else tensor_._make(value, False))
    return tuple(results)


def _accumulate_leaf_grad(leaf, dout: np.ndarray, given_to_leaves: set) -> None:
    """Add `dout` into `leaf.grad`, making sure no two leaves ever share one gradient array."""
    if leaf.grad is None:
        # A backward rule may pass its incoming gradient through unchanged (to two inputs, or as a
        # view): copy unless this leaf is the array's only owner, so that in-place updates of one
        # .grad (clipping, accumulation) never change another's.
        if not dout.flags.owndata or id(dout) in given_to_leaves or not dout.flags.writeable:
            dout = dout.copy()
        given_to_leaves.add(id(dout))
        leaf.grad = dout  # stored as a Gradient view (see Tensor.grad)
    else:
        np.add(leaf._grad, dout, out=leaf._grad)


__all__ = ["grad"]
