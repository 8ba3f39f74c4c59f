"""Optimizers: SGD and AdamW, global gradient-norm clipping, and the appendix-D learning-rate schedule.

What this file adds: the update rules that turn the gradients left in `p.grad` by `loss.backward()`
into new weights. Chapter 5.2 of the book trains with `torch.optim.AdamW(model.parameters(),
lr=0.0004, weight_decay=0.1)`; appendix D adds a linear warmup, a cosine decay and gradient clipping.
minigpt offers the same names and semantics as PyTorch: `AdamW`, `SGD`, `zero_grad`, `step`,
`param_groups`, `state_dict` / `load_state_dict`, `clip_grad_norm_`, plus the book's schedule as a
plain function, `warmup_cosine_lr`.

A parameter is anything with `.data` (a floating-point `np.ndarray`) and `.grad` (an array of the
same shape, or None when no gradient reached it), such as `minigpt.nn.Parameter`.

Why AdamW keeps its parameters in one flat buffer: an update written as a few NumPy expressions per
parameter makes a dozen full-size temporaries per step and streams each one through main memory.
AdamW here copies every parameter of a group into one contiguous float32 buffer at construction and
rebinds `p.data` as a view into it; the update then runs over chunks small enough to stay in the
L2 cache, with in-place ufuncs (`out=`) and no temporaries, which is about 4x faster than the
per-parameter expressions (`python scripts/bench.py optim` measures it). The chunks of a
large parameter are shared among the engine's threads (`autograd.parallel.parallel_for`, the one
thread switch: after `autograd.parallel.set_num_threads(1)` the update runs in the calling thread
only). The price is a
contract: `p.data` must stay that view. Copy new values into it (`p.data[...] = values`); do not
assign a new array to `p.data`. `step()` checks this and raises RuntimeError when it is broken.

References:
    Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (ICLR), algorithm 2.
    Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", algorithm 1.
    Book chapter 5.2 (training loop, listing 5.3) and appendix D (warmup, cosine decay, clipping).
    PyTorch: torch.optim.AdamW, torch.optim.SGD, torch.nn.utils.clip_grad_norm_.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading

import numpy as np

from autograd import memory
from autograd.parallel import GRAIN_SIZE, parallel_for

# Elements per chunk of the flat AdamW update. Each chunk touches five float32 arrays (parameter,
# gradient, two moments and one scratch array): 5 * 65536 * 4 bytes = 1.25 MiB, about the 1 MiB L2
# cache per core of the machine this was tuned on (backed by a 32 MiB L3), so the fourteen passes
# over one chunk hit the caches and only the first read and last write of each element go to main
# memory. Measured on 124M parameters: 8192 -> 348 ms, 32768 -> 245 ms, 65536 -> 230 ms,
# 131072 -> 236 ms per step; smaller chunks pay more Python overhead per element.
CHUNK_SIZE = 65536


# ------------------------------------------------------------------------------------------------
# Argument checks shared by the optimizers and the schedule.
# ------------------------------------------------------------------------------------------------


def _check_real(name: str, value, *, low: float = 0.0, low_inclusive: bool = True, high=None) -> float:
    """Return `value` as a Python float, or raise ValueError naming `name`, the range and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite real number, received {value!r}")
    too_low = value < low if low_inclusive else value <= low
    too_high = high is not None and value >= high
    if too_low or too_high:
        lower = f">= {low}" if low_inclusive else f"> {low}"
        upper = f" and < {high}" if high is not None else ""
        raise ValueError(f"{name}: expected a number {lower}{upper}, received {value!r}")
    return float(value)


def _check_int(name: str, value, *, low: int) -> int:
    """Return `value` as a Python int, or raise ValueError naming `name`, the bound and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= {low}, received {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, received {value!r}")
    return int(value)


def _check_parameter(parameter, where: str) -> None:
    """Raise TypeError unless `parameter` has a floating-point `np.ndarray` in `.data`."""
    data = getattr(parameter, "data", None)
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        described = type(data).__name__ if not isinstance(data, np.ndarray) else f"array of {data.dtype}"
        raise TypeError(
            f"{where}: expected a parameter with a floating-point np.ndarray in .data, "
            f"received {type(parameter).__name__} whose .data is {described}"
        )


def _gradient_of(parameter, index: int):
    """Return `parameter.grad` (None when no gradient reached it), checking its shape."""
    grad = parameter.grad
    if grad is not None and grad.shape != parameter.data.shape:
        raise ValueError(
            f"parameter {index}: .grad has shape {grad.shape}, expected the shape of .data, "
            f"{parameter.data.shape}"
        )
    return grad


# ------------------------------------------------------------------------------------------------
# The base class: parameter groups, zero_grad, state_dict.
# ------------------------------------------------------------------------------------------------


class Optimizer:
    """Base class of the optimizers: parameter groups, `zero_grad`, `state_dict`, `load_state_dict`.

    Args:
        params: an iterable of parameters, or of parameter-group dicts such as
            `{"params": [...], "weight_decay": 0.0}`; a key missing from a group takes the value
            given to the optimizer (`defaults`). Groups let biases, LayerNorm and embeddings skip
            weight decay while the matrices keep it.
        defaults: the hyperparameters of every group (e.g. `{"lr": 1e-3, "weight_decay": 0.01}`).

    Attributes:
        param_groups: list of dicts, each with "params" (a list of parameters) and the
            hyperparameters. The schedule sets `param_groups[i]["lr"]` before each step.

    Raises:
        ValueError: `params` is empty, or a parameter appears twice.
        TypeError: an element of `params` has no floating-point `np.ndarray` in `.data`.

    Building the first optimizer of a process also applies the training process settings
    (`autograd.memory.apply_process_settings`: freed memory kept for reuse, OpenBLAS's idle
    timeout), once: a training loop is about to run. Opt out with MINIGPT_PROCESS_SETTINGS=0 or
    `autograd.memory.disable_process_settings()` before building it.

    References: torch.optim.Optimizer.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        if isinstance(params, dict):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("params: expected at least one parameter, received an empty iterable")
        is_group = [isinstance(entry, dict) for entry in params]
        if any(is_group) and not all(is_group):
            raise TypeError("params: expected either parameters or parameter-group dicts, received a mixture")
        groups = params if all(is_group) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)
        memory.apply_process_settings()  # once per process; returns at once after the first time

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (missing keys take the defaults).

        Raises:
            ValueError: the group has no "params", or one of its parameters is already in a group.
            TypeError: a parameter has no floating-point `np.ndarray` in `.data`.
        """
        if "params" not in param_group:
            raise ValueError(f"param_group: expected a dict with a 'params' key, received keys {sorted(param_group)}")
        group = dict(param_group)
        members = group["params"]
        # A lone parameter is accepted as a group of one, as PyTorch does.
        group["params"] = [members] if hasattr(members, "data") else list(members)
        if not group["params"]:
            raise ValueError(f"param group {len(self.param_groups)}: 'params' is empty")
        seen = {id(parameter) for existing in self.param_groups for parameter in existing["params"]}
        for position, parameter in enumerate(group["params"]):
            _check_parameter(parameter, f"param group {len(self.param_groups)}, parameter {position}")
            if id(parameter) in seen:
                raise ValueError(
                    f"param group {len(self.param_groups)}, parameter {position}: appears more than once "
                    "in the optimizer's parameters (a tied weight should be passed once)"
                )
            seen.add(id(parameter))
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict) -> None:
        """Raise ValueError when a hyperparameter of `group` is out of range (subclasses override)."""

    def _parameters(self):
        """Yield (index, parameter) over all groups, numbered as in `state_dict()` (PyTorch's order)."""
        index = 0
        for group in self.param_groups:
            for parameter in group["params"]:
                yield index, parameter
                index += 1

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients before the next backward pass.

        Args:
            set_to_none: True (default, as PyTorch) sets `p.grad = None`, so the next backward
                allocates fresh gradients; False fills the existing gradient arrays with zeros.

        References: torch.optim.Optimizer.zero_grad.
        """
        for _, parameter in self._parameters():
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad[...] = 0

    def step(self) -> None:  # pragma: no cover - every optimizer overrides it
        raise NotImplementedError

    # State: a plain dict as PyTorch's, {"state": {index: {...}}, "param_groups": [...]}.

    def _parameter_state(self, index: int, parameter) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _load_parameter_state(self, index: int, parameter, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Return the optimizer's state: per-parameter state and the groups' hyperparameters.

        Returns:
            `{"state": {index: {name: value}}, "param_groups": [{hyperparameters..., "params":
            [indices]}]}`, the layout of PyTorch's `Optimizer.state_dict()`. Parameters are
            numbered across groups in order. Arrays are read-only views of the optimizer's live
            buffers, not copies (PyTorch returns references too): they change at the next
            `step()`, so copy them (or save them) before stepping if you need a snapshot.
            `flatten_state_dict` turns this into `{str: np.ndarray}` plus JSON-able metadata.

        References: torch.optim.Optimizer.state_dict.
        """
        state = {index: self._parameter_state(index, parameter) for index, parameter in self._parameters()}
        state = {index: value for index, value in state.items() if value is not None}
        param_groups = []
        index = 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            param_groups.append(saved)
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state saved by `state_dict()`, copying arrays into the existing buffers.

        The parameters themselves are not touched (the model's own `load_state_dict` restores
        them); the optimizer's moments, step counts and hyperparameters are.

        Raises:
            ValueError: the number of groups, of parameters in a group, or an array's shape differs
                from this optimizer's, or a hyperparameter is out of range.

        References: torch.optim.Optimizer.load_state_dict.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict: has {len(saved_groups)} parameter groups, this optimizer has {len(self.param_groups)}"
            )
        for number, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"state_dict: parameter group {number} has {len(saved['params'])} parameters, "
                    f"this optimizer's has {len(group['params'])}"
                )
        state = {int(index): value for index, value in state_dict["state"].items()}
        # Check everything before changing anything, so a bad state leaves the optimizer as it was.
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            new_group = {key: value for key, value in saved.items() if key != "params"}
            if "betas" in new_group:
                new_group["betas"] = tuple(new_group["betas"])  # JSON turns the tuple into a list
            new_group["params"] = group["params"]
            self._check_hyperparameters(new_group)
            new_groups.append(new_group)
        for index, parameter in self._parameters():
            self._check_parameter_state(index, parameter, state.get(index))
        for index, parameter in self._parameters():
            self._load_parameter_state(index, parameter, state.get(index))
        for group, new_group in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new_group)

    def _check_parameter_state(self, index: int, parameter, state) -> None:
        """Raise ValueError when the saved state of parameter `index` does not fit it."""
        if state is None:
            return
        for name, value in state.items():
            if isinstance(value, np.ndarray) and value.shape != parameter.data.shape:
                raise ValueError(
                    f"state_dict: state[{index}][{name!r}] has shape {value.shape}, "
                    f"expected the parameter's shape {parameter.data.shape}"
                )


def flatten_state_dict(state_dict: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Split an optimizer state dict into arrays keyed by name and JSON-able metadata.

    The arrays suit a safetensors file (`{str: np.ndarray}`); the metadata (step counts,
    hyperparameters, group layout) suits `json.dumps`. `unflatten_state_dict` inverts it exactly.

    Example: `{"state": {0: {"step": 3, "exp_avg": a}}, "param_groups": [...]}` ->
    `({"state.0.exp_avg": a}, {"state": {"0": {"step": 3}}, "param_groups": [...]})`.
    """
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, dict] = {}
    for index, parameter_state in state_dict["state"].items():
        kept = {}
        for name, value in parameter_state.items():
            if isinstance(value, np.ndarray):
                arrays[f"state.{index}.{name}"] = value
            else:
                kept[name] = value.item() if isinstance(value, np.generic) else value
        scalars[str(index)] = kept
    param_groups = []
    for group in state_dict["param_groups"]:
        saved = {}
        for key, value in group.items():
            if isinstance(value, np.generic):
                value = value.item()
            elif isinstance(value, tuple):
                value = [item.item() if isinstance(item, np.generic) else item for item in value]
            saved[key] = value
        param_groups.append(saved)
    return arrays, {"state": scalars, "param_groups": param_groups}


def unflatten_state_dict(arrays: dict[str, np.ndarray], metadata: dict) -> dict:
    """Rebuild the state dict that `flatten_state_dict` split (the inverse, exactly).

    Raises:
        ValueError: an array's name is not of the form "state.<index>.<name>".
    """
    state = {int(index): dict(values) for index, values in metadata["state"].items()}
    for key, value in arrays.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            raise ValueError(f"arrays: expected keys of the form 'state.<index>.<name>', received {key!r}")
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    return {"state": state, "param_groups": [dict(group) for group in metadata["param_groups"]]}


# ------------------------------------------------------------------------------------------------
# AdamW over one flat buffer per parameter group.
# ------------------------------------------------------------------------------------------------


class _FlatGroup:
    """The flat storage of one parameter group: parameters, both moments, step counts.

    `data[offsets[i]:offsets[i] + sizes[i]]` holds parameter i of the group, whose `.data` is
    that slice reshaped to `shapes[i]`; `exp_avg` and `exp_avg_sq` are laid out the same way.
    `step[i]` counts the updates parameter i received (a parameter without a gradient is skipped
    and its count does not advance, as PyTorch keeps a step per parameter).

    A parameter frozen when the optimizer is built (`requires_grad=False`, as the base weights
    of a LoRA model, appendix E) gets no slot: `frozen[i]` is True, its size here is 0, its
    `.data` is left where it is, and it has no moments. PyTorch creates Adam's state lazily, at a
    parameter's first gradient, so a frozen weight costs it nothing either; here the state is laid
    out at construction, so freezing must happen before the optimizer is built.
    """

    def __init__(self, parameters: list, group_number: int):
        dtypes = {parameter.data.dtype for parameter in parameters}
        if len(dtypes) != 1:
            raise ValueError(
                f"param group {group_number}: expected parameters of one dtype, received {sorted(map(str, dtypes))}"
            )
        self.dtype = dtypes.pop()
        # Objects without `requires_grad` (any `.data`/`.grad` holder) count as trainable.
        self.frozen = [not getattr(parameter, "requires_grad", True) for parameter in parameters]
        self.shapes = [parameter.data.shape for parameter in parameters]
        self.sizes = [0 if frozen else parameter.data.size for parameter, frozen in zip(parameters, self.frozen)]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64).tolist()
        _check_no_shared_memory(parameters)
        total = int(sum(self.sizes))
        self.data = np.empty(total, dtype=self.dtype)
        self.exp_avg = np.zeros(total, dtype=self.dtype)
        self.exp_avg_sq = np.zeros(total, dtype=self.dtype)
        self.step = np.zeros(len(parameters), dtype=np.int64)
        self.addresses = []
        for parameter, offset, size, shape, frozen in zip(parameters, self.offsets, self.sizes, self.shapes, self.frozen):
            if frozen:
                self.addresses.append(None)
                continue
            view = self.data[offset:offset + size]
            view[...] = parameter.data.reshape(-1)
            parameter.data = view.reshape(shape)
            self.addresses.append(view.ctypes.data)
        self.check_views(parameters, group_number)

    def check_views(self, parameters: list, group_number: int) -> None:
        """Raise RuntimeError unless every `p.data` is still its own slice of the flat buffer."""
        for position, (parameter, address, shape) in enumerate(zip(parameters, self.addresses, self.shapes)):
            if address is None:  # frozen at construction: not in the buffer
                continue
            data = parameter.data
            if (
                not isinstance(data, np.ndarray)
                or data.dtype != self.dtype
                or data.shape != shape
                or not data.flags.c_contiguous
                or data.ctypes.data != address
            ):
                raise RuntimeError(
                    f"param group {group_number}, parameter {position}: .data is no longer a view of "
                    "AdamW's flat buffer (a new array was assigned to it, e.g. by a load that assigns "
                    "instead of copying). Copy values in place with `p.data[...] = values`, or create "
                    "the optimizer after loading the weights."
                )

    def view(self, buffer: np.ndarray, position: int) -> np.ndarray:
        """Return parameter `position`'s slice of `buffer` (data or a moment) in its own shape."""
        offset, size = self.offsets[position], self.sizes[position]
        return buffer[offset:offset + size].reshape(self.shapes[position])


def _check_no_shared_memory(parameters: list) -> None:
    """Raise ValueError when two parameters' arrays overlap (flattening would untie them).

    Parameters are numbered as in `state_dict()`. Sorting the byte ranges makes this one pass.
    """
    bounds = sorted(
        (np.lib.array_utils.byte_bounds(parameter.data), position)
        for position, parameter in enumerate(parameters)
        if parameter.data.size > 0
    )
    for ((_, previous_end), previous), ((start, _), position) in zip(bounds, bounds[1:]):
        if start < previous_end:
            first, second = sorted((previous, position))
            raise ValueError(
                f"params: parameters {first} and {second} share memory (a tied weight?); AdamW copies "
                "each parameter into its own slice of a flat buffer, which would untie them. Pass a "
                "tied weight as one parameter."
            )


class AdamW(Optimizer):
    """Adam with decoupled weight decay, updated in place over one flat buffer per group.

    For each parameter p with gradient g, at its step t (1, 2, ...):

        p   <- p * (1 - lr * weight_decay)              # decoupled decay, before the Adam step
        m   <- beta1 * m + (1 - beta1) * g              # first moment (exp_avg)
        v   <- beta2 * v + (1 - beta2) * g * g          # second moment (exp_avg_sq)
        p   <- p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    which is torch.optim.AdamW (amsgrad=False, maximize=False) line by line: the bias corrections
    1 - beta**t of Kingma & Ba (algorithm 1) undo the zero initialisation of m and v, and eps is
    added to the bias-corrected square root, not to the variance. A parameter whose `.grad` is
    None is skipped entirely, as PyTorch does: no decay, no moment update, its step count stays.
    A parameter with `requires_grad=False` when the optimizer is built (a frozen base weight of a
    LoRA model, appendix E) takes no room in the flat buffer and has no moments; its `.data` stays
    where it is. Freeze or unfreeze before building the optimizer: such a parameter that later
    receives a gradient raises RuntimeError at `step()`.

    Args:
        params: parameters or parameter-group dicts (see `Optimizer`). At construction each
            group's parameters are copied into one flat buffer and `p.data` becomes a view of it;
            all parameters of a group must share one floating-point dtype (float32 for training).
        lr: learning rate, a step size in parameter units per unit of normalised gradient; the
            book uses 0.0004 (chapter 5.2).
        betas: (beta1, beta2), decay rates of the moment averages, each in [0, 1).
        eps: added to sqrt(v_hat) in the denominator for numerical stability, >= 0.
        weight_decay: decoupled decay coefficient lambda (per unit of lr), >= 0; 0 in a group
            makes that group skip decay (biases, LayerNorm, embeddings).
        chunk_size: elements updated per chunk (default CHUNK_SIZE, sized for the L2 cache).
        num_threads: deprecated. None (default) shares the chunks of a large parameter among the
            engine's threads (`autograd.parallel.parallel_for`; NumPy's ufuncs release the GIL,
            so two threads use both cores of a 2-core CPU), as many as
            `autograd.parallel.set_num_threads` says; 1 keeps the update in the calling thread;
            any other value is accepted and means None (AdamW starts no threads of its own). The
            result is identical either way: every element is updated independently.

    Raises:
        ValueError: a hyperparameter out of range; a group mixing dtypes; parameters sharing memory.
        RuntimeError (at `step()`): a parameter's `.data` is no longer a view of the flat buffer.

    References:
        Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", algorithm 2.
        Kingma & Ba 2015, "Adam", algorithm 1 (bias correction).
        Book chapter 5.2 (`torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)`).
        PyTorch: torch.optim.AdamW (its documented algorithm, single-tensor implementation).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        chunk_size: int = CHUNK_SIZE,
        num_threads: int | None = None,
    ):
        self.chunk_size = _check_int("chunk_size", chunk_size, low=1)
        self.num_threads = None if num_threads is None else _check_int("num_threads", num_threads, low=1)
        self._flat_groups: list[_FlatGroup] = []
        params = [params] if isinstance(params, dict) else list(params)
        # Check ties across all groups before any is flattened: once a parameter's values move into
        # a flat buffer, a second parameter that shared its array would silently stop sharing it.
        everything = [
            member
            for entry in params
            for member in (entry.get("params", []) if isinstance(entry, dict) else [entry])
        ]
        # (The same object twice is left to the base class, whose message says so.)
        unique = {id(member): member for member in everything if isinstance(getattr(member, "data", None), np.ndarray)}
        _check_no_shared_memory(list(unique.values()))
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._flat_groups.append(_FlatGroup(self.param_groups[-1]["params"], len(self.param_groups) - 1))

    def _check_hyperparameters(self, group: dict) -> None:
        _check_real("lr", group["lr"])
        _check_real("eps", group["eps"])
        _check_real("weight_decay", group["weight_decay"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), received {betas!r}")
        _check_real("betas[0]", betas[0], high=1.0)
        _check_real("betas[1]", betas[1], high=1.0)

    def step(self) -> None:
        """Update every parameter that has a gradient, in place (see the class docstring).

        Raises:
            RuntimeError: a parameter's `.data` is no longer a view of the flat buffer.
            ValueError: a gradient's shape differs from its parameter's, or `lr` was set out of range.
        """
        index = 0
        for number, (group, flat) in enumerate(zip(self.param_groups, self._flat_groups)):
            flat.check_views(group["params"], number)
            self._check_hyperparameters(group)
            for position, parameter in enumerate(group["params"]):
                grad = _gradient_of(parameter, index + position)
                if grad is None:
                    continue
                if flat.frozen[position]:
                    raise RuntimeError(
                        f"param group {number}, parameter {position}: has a gradient but had "
                        "requires_grad=False when AdamW was built, so it has no optimizer state; "
                        "build the optimizer after freezing or unfreezing parameters"
                    )
                flat.step[position] += 1
                self._update(flat, position, grad, group, int(flat.step[position]))
            index += len(group["params"])

    def _update(self, flat: _FlatGroup, position: int, grad: np.ndarray, group: dict, step: int) -> None:
        """Apply one AdamW step to parameter `position` of `flat`, chunk by chunk, in place."""
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        # Scalars in the buffer's dtype: a Python float would be fine for NumPy 2's casting rules,
        # but np.float32 states the intent and keeps every operand float32.
        scalar = flat.dtype.type
        decay = scalar(1.0 - lr * weight_decay)
        one_minus_beta1, one_minus_beta2 = scalar(1.0 - beta1), scalar(1.0 - beta2)
        beta2_scalar, eps = scalar(beta2), scalar(group["eps"])
        # Bias corrections (Kingma & Ba 2015, algorithm 1; Loshchilov & Hutter 2019, algorithm 2),
        # computed in Python floats as PyTorch does, then applied as two scalars.
        step_size = scalar(lr / (1.0 - beta1**step))
        bias_correction2_sqrt = scalar(math.sqrt(1.0 - beta2**step))

        grad = grad.reshape(-1)  # a view when the gradient is contiguous, as it usually is
        offset, size = flat.offsets[position], flat.sizes[position]
        constants = (decay, one_minus_beta1, one_minus_beta2, beta2_scalar, eps, step_size, bias_correction2_sqrt)
        update = functools.partial(self._update_chunks, flat, offset, size, grad, weight_decay != 0.0, constants)
        chunks = -(-size // self.chunk_size)
        if self.num_threads == 1:
            update(0, chunks)
            return
        # Large parameters: the engine's threads share the chunks (each a contiguous run of them,
        # with its own scratch); a piece is at least GRAIN_SIZE elements, as for the fused ops.
        parallel_for(0, chunks, max(1, -(-GRAIN_SIZE // self.chunk_size)), update)

    def _update_chunks(self, flat, offset: int, size: int, grad: np.ndarray, decays: bool, constants: tuple,
                       first_chunk: int, stop_chunk: int) -> None:
        """The AdamW update of chunks [first_chunk, stop_chunk) of one parameter (see `_update`)."""
        decay, one_minus_beta1, one_minus_beta2, beta2_scalar, eps, step_size, bias_correction2_sqrt = constants
        scratch = self._scratch(flat.dtype)
        for start in range(first_chunk * self.chunk_size, min(stop_chunk * self.chunk_size, size), self.chunk_size):
            stop = min(start + self.chunk_size, size)
            p = flat.data[offset + start:offset + stop]
            m = flat.exp_avg[offset + start:offset + stop]
            v = flat.exp_avg_sq[offset + start:offset + stop]
            g = grad[start:stop]
            t = scratch[:stop - start]
            if decays:
                np.multiply(p, decay, out=p)  # p *= 1 - lr * weight_decay (decoupled decay)
            np.subtract(g, m, out=t)  # m += (1 - beta1) * (g - m), PyTorch's exp_avg.lerp_(g, 1 - beta1)
            np.multiply(t, one_minus_beta1, out=t)
            np.add(m, t, out=m)
            np.multiply(v, beta2_scalar, out=v)  # v = beta2 * v + (1 - beta2) * g * g
            np.multiply(g, g, out=t)
            np.multiply(t, one_minus_beta2, out=t)
            np.add(v, t, out=v)
            np.sqrt(v, out=t)  # denominator: sqrt(v) / sqrt(1 - beta2**t) + eps
            np.divide(t, bias_correction2_sqrt, out=t)
            np.add(t, eps, out=t)
            np.divide(m, t, out=t)  # p -= lr / (1 - beta1**t) * m / denominator
            np.multiply(t, step_size, out=t)
            np.subtract(p, t, out=p)

    def _scratch(self, dtype: np.dtype) -> np.ndarray:
        """Return a reusable scratch array of `chunk_size` elements, one per dtype and thread (the
        engine's threads run chunks of one parameter at the same time)."""
        scratches = self.__dict__.setdefault("_scratches", {})
        key = (dtype, threading.get_ident())
        if key not in scratches:
            scratches[key] = np.empty(self.chunk_size, dtype=dtype)
        return scratches[key]

    def _locate(self, index: int) -> tuple[_FlatGroup, int]:
        """Return the flat group holding parameter `index` and the parameter's position in it."""
        for group, flat in zip(self.param_groups, self._flat_groups):
            if index < len(group["params"]):
                return flat, index
            index -= len(group["params"])
        raise IndexError(index)  # pragma: no cover - indices come from _parameters()

    def _parameter_state(self, index: int, parameter) -> dict | None:
        flat, position = self._locate(index)
        if flat.frozen[position]:
            return None  # no state, as PyTorch for a parameter that never had a gradient
        exp_avg = flat.view(flat.exp_avg, position)
        exp_avg_sq = flat.view(flat.exp_avg_sq, position)
        exp_avg.flags.writeable = False  # read-only views: the caller cannot corrupt the live state
        exp_avg_sq.flags.writeable = False
        return {"step": int(flat.step[position]), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    def _check_parameter_state(self, index: int, parameter, state) -> None:
        super()._check_parameter_state(index, parameter, state)
        if state is not None:
            flat, position = self._locate(index)
            if flat.frozen[position]:
                raise ValueError(
                    f"state_dict: state[{index}] is given, but parameter {index} was frozen "
                    "(requires_grad=False) when this optimizer was built and has no state"
                )
            missing = {"step", "exp_avg", "exp_avg_sq"} - set(state)
            if missing:
                raise ValueError(f"state_dict: state[{index}] lacks {sorted(missing)}")
            _check_int(f"state_dict: state[{index}]['step']", state["step"], low=0)

    def _load_parameter_state(self, index: int, parameter, state) -> None:
        flat, position = self._locate(index)
        if flat.frozen[position]:
            return  # _check_parameter_state made sure there is no state to load
        if state is None:  # never stepped (PyTorch omits such parameters from its state)
            flat.view(flat.exp_avg, position)[...] = 0
            flat.view(flat.exp_avg_sq, position)[...] = 0
            flat.step[position] = 0
            return
        # Copy into the flat buffers: assigning would break the views the update relies on.
        np.copyto(flat.view(flat.exp_avg, position), state["exp_avg"])
        np.copyto(flat.view(flat.exp_avg_sq, position), state["exp_avg_sq"])
        flat.step[position] = int(state["step"])


# ------------------------------------------------------------------------------------------------
# SGD.
# ------------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and (coupled, L2) weight decay.

    For each parameter p with gradient g (torch.optim.SGD with dampening=0, nesterov=False):

        d = g + weight_decay * p                     # L2 penalty folded into the gradient
        b = d                 at the first step      # momentum buffer
        b = momentum * b + d  afterwards
        p <- p - lr * b       (p <- p - lr * d when momentum == 0)

    Args:
        params: parameters or parameter-group dicts (see `Optimizer`).
        lr: learning rate, in parameter units per unit of gradient, >= 0.
        momentum: momentum factor in [0, 1) (0: plain SGD).
        weight_decay: L2 penalty coefficient, >= 0 (added to the gradient, unlike AdamW's).

    Raises:
        ValueError: a hyperparameter out of range.

    References: PyTorch torch.optim.SGD; Sutskever et al. 2013, "On the importance of
    initialization and momentum in deep learning" (the momentum form PyTorch uses).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self._momentum_buffers: dict[int, np.ndarray] = {}
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _check_hyperparameters(self, group: dict) -> None:
        _check_real("lr", group["lr"])
        _check_real("momentum", group["momentum"], high=1.0)
        _check_real("weight_decay", group["weight_decay"])

    def step(self) -> None:
        """Update every parameter that has a gradient, in place (see the class docstring).

        Raises:
            ValueError: a gradient's shape differs from its parameter's, or `lr` was set out of range.
        """
        index = 0
        for group in self.param_groups:
            self._check_hyperparameters(group)
            for parameter in group["params"]:
                grad = _gradient_of(parameter, index)
                if grad is not None:
                    self._update(index, parameter, grad, group)
                index += 1

    def _update(self, index: int, parameter, grad: np.ndarray, group: dict) -> None:
        scalar = parameter.data.dtype.type
        direction = grad
        if group["weight_decay"] != 0.0:
            direction = grad + scalar(group["weight_decay"]) * parameter.data
        if group["momentum"] != 0.0:
            buffer = self._momentum_buffers.get(index)
            if buffer is None:
                buffer = np.array(direction, dtype=parameter.data.dtype)  # a copy, as PyTorch's clone
                self._momentum_buffers[index] = buffer
            else:
                np.multiply(buffer, scalar(group["momentum"]), out=buffer)
                np.add(buffer, direction, out=buffer)
            direction = buffer
        # In place, so `p.data` stays the same array (views held elsewhere see the update).
        parameter.data -= scalar(group["lr"]) * direction

    def _parameter_state(self, index: int, parameter) -> dict:
        buffer = self._momentum_buffers.get(index)
        if buffer is not None:
            buffer = buffer.view()
            buffer.flags.writeable = False
        return {"momentum_buffer": buffer}

    def _load_parameter_state(self, index: int, parameter, state) -> None:
        buffer = None if state is None else state.get("momentum_buffer")
        if buffer is None:
            self._momentum_buffers.pop(index, None)
        else:
            self._momentum_buffers[index] = np.array(buffer, dtype=parameter.data.dtype)


# ------------------------------------------------------------------------------------------------
# Gradient clipping and the learning-rate schedule (book appendix D).
# ------------------------------------------------------------------------------------------------


def clip_grad_norm_(parameters, max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so that their global L2 norm is at most `max_norm`.

        total_norm = sqrt(sum over parameters of sum(g * g))
        clip_coef  = min(max_norm / (total_norm + 1e-6), 1)        # PyTorch's formula
        g <- g * clip_coef   for every gradient (only when clip_coef < 1)

    Parameters whose `.grad` is None are ignored. Each array's sum of squares is a float32 BLAS
    dot product (no float64 copy of the gradients); the per-array sums are added in Python floats.
    In the book's appendix D the trainer clips with max_norm=1.0 once warmup is over: the
    repository's notebook clips when `global_step >= warmup_steps` (the printed book had `>`), and
    minigpt follows the notebook.

    Args:
        parameters: an iterable of parameters (objects with `.grad`), e.g. `model.parameters()`.
        max_norm: the largest allowed global norm, > 0, in gradient units.
        error_if_nonfinite: raise RuntimeError when the norm is inf or NaN (PyTorch's flag).

    Returns:
        The global norm before clipping, a Python float (0.0 when no parameter has a gradient).

    Raises:
        ValueError: `max_norm` is not a finite number > 0.
        RuntimeError: the norm is not finite and `error_if_nonfinite` is True.

    References: PyTorch torch.nn.utils.clip_grad_norm_; Pascanu et al. 2013, "On the difficulty of
    training recurrent neural networks", algorithm 1; book appendix D.3.
    """
    max_norm = _check_real("max_norm", max_norm, low=0.0, low_inclusive=False)
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    sum_of_squares = 0.0
    for grad in grads:
        flat = grad.reshape(-1)
        sum_of_squares += float(np.dot(flat, flat))
    total_norm = math.sqrt(sum_of_squares)
    if not math.isfinite(total_norm) and error_if_nonfinite:
        raise RuntimeError(
            f"clip_grad_norm_: the total gradient norm is {total_norm}; set error_if_nonfinite=False to clip anyway"
        )
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1.0:
        for grad in grads:
            np.multiply(grad, grad.dtype.type(clip_coef), out=grad)
    return total_norm


def warmup_cosine_lr(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    peak_lr: float,
    initial_lr: float,
    min_lr: float,
) -> float:
    """Return the learning rate at `step`: linear warmup, then cosine decay (book appendix D).

        step < warmup_steps:  lr = initial_lr + step * (peak_lr - initial_lr) / warmup_steps
        otherwise:            progress = (step - warmup_steps) / (total_steps - warmup_steps)
                              lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + cos(pi * progress))

    Step 0 gets `initial_lr` (not 0), `warmup_steps` gets `peak_lr`, `total_steps` gets `min_lr`.
    The book computes this per batch with `global_step` counted from 0 and sets
    `param_group["lr"]` before `optimizer.step()`; do the same with the value returned here.
    Gradient clipping (`clip_grad_norm_`, max_norm=1.0) applies from step `warmup_steps` on.

    Args:
        step: the global step (optimizer steps taken so far), 0 <= step <= total_steps.
        total_steps: steps in the whole run (the book: len(train_loader) * n_epochs), >= 1.
        warmup_steps: steps of linear warmup, 0 <= warmup_steps < total_steps (the book uses
            20 % of total_steps).
        peak_lr: learning rate reached at the end of warmup, >= 0.
        initial_lr: learning rate at step 0, >= 0 (the book: 3e-5, or 0.0001 in D.1).
        min_lr: learning rate at the end of the cosine decay, 0 <= min_lr <= peak_lr
            (the book: 0.1 * initial_lr).

    Returns:
        The learning rate, a Python float.

    Raises:
        ValueError: an argument out of range; the message names it, the range and the value.

    References: book appendix D.1 (warmup) and D.2 (cosine decay); Loshchilov & Hutter 2017,
    "SGDR: Stochastic Gradient Descent with Warm Restarts", eq. 5 (cosine annealing).
    """
    total_steps = _check_int("total_steps", total_steps, low=1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, low=0)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps: expected fewer than total_steps={total_steps} (the cosine decay needs at "
            f"least one step), received {warmup_steps}"
        )
    step = _check_int("step", step, low=0)
    if step > total_steps:
        raise ValueError(
            f"step: expected at most total_steps={total_steps} (past it the cosine would rise "
            f"again), received {step}"
        )
    peak_lr = _check_real("peak_lr", peak_lr)
    initial_lr = _check_real("initial_lr", initial_lr)
    min_lr = _check_real("min_lr", min_lr)
    if min_lr > peak_lr:
        raise ValueError(f"min_lr: expected at most peak_lr={peak_lr}, received {min_lr}")
    if step < warmup_steps:
        lr_increment = (peak_lr - initial_lr) / warmup_steps
        return initial_lr + step * lr_increment
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
