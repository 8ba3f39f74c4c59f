"""Module machinery: `Parameter`, `Module`, `Sequential`, `ModuleList` (PyTorch's torch.nn core).

A `Module` is a piece of a network that owns learnable `Parameter`s and child modules. Assigning
either one to an attribute registers it (`self.weight = Parameter(...)`, `self.att =
MultiHeadAttention(...)`), which is all `parameters()`, `state_dict()`, `train()`/`eval()` and
`to(dtype)` need to find every weight of a model by walking the tree. `register_buffer` adds state
that is not learned (the book's causal `mask`): in the state dict, converted by `to`, never a
parameter. Names are dotted paths,
`trf_blocks.0.att.W_query.weight`, exactly as PyTorch prints them for the book's model.

What this file adds to the engine: nothing numerical. Layers (`layers.py`, `attention.py`,
`transformer.py`) compose engine ops in `forward`; gradients come from the engine's backward rules.

References: torch.nn.Module, torch.nn.Parameter, torch.nn.Sequential, torch.nn.ModuleList;
Raschka, "Build a Large Language Model (From Scratch)", appendix A.5 (nn.Module), ch. 3.5.3
(register_buffer) and ch. 4.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Iterator

import numpy as np

from autograd import Tensor
from autograd.bf16 import is_bfloat16, round_to_bfloat16
from autograd.tensor import HookHandle
from autograd.device import check_device
from autograd.device import device as autograd_device

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "IncompatibleKeys"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "Returned by `load_state_dict(strict=False)`: the keys it skipped (as PyTorch)."


class Parameter(Tensor):
    """A Tensor that is a learnable weight of a Module: a leaf with `requires_grad=True`.

    Args:
        data: an array, nested list or number. Python numbers and lists become float32; an
            `np.ndarray` keeps its floating dtype and is used without a copy (as torch.nn.Parameter).
        requires_grad: False freezes the parameter (fine-tuning only some layers, book ch. 6.5).

    Raises:
        TypeError: `data` is not floating point (a parameter must be differentiable).

    NOTE: an optimizer may make `.data` a view into one flat buffer (minigpt.optim.AdamW does).
    Change values in place, `param.data[...] = values`, never `param.data = new_array`.

    References: torch.nn.Parameter.
    """

    def __init__(self, data, requires_grad: bool = True):
        array = data.data if isinstance(data, Tensor) else data
        if not isinstance(array, np.ndarray):
            array = np.asarray(array, dtype=np.float32)
        if is_bfloat16(array.dtype):  # an ml_dtypes bfloat16 array: computed in float32
            array = array.astype(np.float32)
        if array.dtype.kind != "f":
            raise TypeError(f"Parameter needs floating-point data, got dtype {array.dtype}")
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model: registers parameters and submodules by assignment.

    A subclass calls `super().__init__()` first, assigns `Parameter`s and `Module`s as attributes,
    and writes `forward`; calling the module runs `forward`.

    Attributes:
        training: True in training mode (dropout active), False after `eval()`.

    Example:
        >>> class Affine(Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.weight = Parameter(np.ones(3, dtype=np.float32))
        ...     def forward(self, x):
        ...         return x * self.weight
        >>> [name for name, _ in Affine().named_parameters()]
        ['weight']

    References: torch.nn.Module.
    """

    # Local names that `load_state_dict` accepts and ignores. The book's attention classes keep
    # their causal mask as a registered buffer, so a state dict saved from the book's model holds
    # `...att.mask`; here the mask is implied by `causal=True` and is not a stored array.
    _ignored_state_keys: tuple = ()

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        # Buffer names -> persistent (in state_dict). The values are plain attributes, so that
        # `self.mask = ...` after registration replaces the buffer, as in PyTorch.
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a Tensor that belongs to the module's state but is not learned (torch's buffer).

        The book's chapter-3 attention keeps its causal mask this way:
        `self.register_buffer("mask", torch.triu(torch.ones(T, T), diagonal=1))`. A buffer is an
        attribute (`self.mask`), is not a parameter (no gradient, not given to an optimizer), is
        in `state_dict()` when `persistent`, and is converted by `to(dtype)` when floating.

        Args:
            name: the attribute name (no dots, not an existing attribute other than a buffer).
            tensor: a Tensor (or np.ndarray, wrapped as a Tensor without gradient), or None (a
                placeholder that `state_dict` skips).
            persistent: False keeps the buffer out of `state_dict` (torch's persistent=False).

        Raises:
            TypeError: name is not a str, or tensor is not a Tensor, array or None.
            KeyError: name is empty, has a dot, or is already a parameter, submodule or attribute.

        References: torch.nn.Module.register_buffer.
        """
        if not isinstance(name, str):
            raise TypeError(f"register_buffer: name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"register_buffer: name must be a non-empty attribute name without dots, got {name!r}")
        if name not in self._buffers and (name in self._parameters or name in self._modules or hasattr(self, name)):
            raise KeyError(f"register_buffer: attribute {name!r} already exists in {type(self).__name__}")
        if isinstance(tensor, np.ndarray):
            tensor = Tensor(tensor)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor, an np.ndarray or None, got {type(tensor).__name__}")
        self._buffers[name] = bool(persistent)
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Every buffer (not None) with its dotted name (`trf_blocks.0.att.mask`), each module once."""
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                value = getattr(module, name, None)
                if value is not None:
                    yield (f"{module_name}.{name}" if module_name else name), value

    def buffers(self) -> Iterator[Tensor]:
        """Every buffer (not None) of this module and its submodules."""
        for _, buffer in self.named_buffers():
            yield buffer

    def _persistent_buffers(self) -> dict[str, Tensor]:
        """The buffers that belong in a state dict, by dotted name (a shared module under each name)."""
        found = {}
        for module_name, module in self._named_modules_all(""):
            for name, persistent in module._buffers.items():
                value = getattr(module, name, None)
                if persistent and value is not None:
                    found[f"{module_name}.{name}" if module_name else name] = value
        return found

    # ---- registration by attribute assignment -------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        registry = self.__dict__.get("_parameters")
        if registry is None:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran: call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        # Replacing a child by a child (or a parameter by a parameter) fills the same slot, as
        # PyTorch does: the order of children (a Sequential's order of calls) and of state_dict
        # keys is kept, and the book's appendix-E LoRA loop can replace children while iterating
        # over named_children().
        same_slot = (isinstance(value, Module) and name in self._modules) or (
            isinstance(value, Parameter) and name in self._parameters
        )
        if not same_slot:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        object.__delattr__(self, name)

    # ---- calling ------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - every layer overrides it
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        hooks = self.__dict__.get("_forward_hooks")
        if hooks:
            for hook in list(hooks):  # hook(module, args, output); a returned value replaces the output
                replaced = hook(self, args, output)
                output = output if replaced is None else replaced
        return output

    def register_forward_hook(self, hook) -> HookHandle:
        """Call `hook(module, args, output)` after every forward; a value it returns replaces the
        output (torch.nn.Module.register_forward_hook; the book's bonus layer debuggers use it).

        Returns:
            A handle whose `remove()` unregisters the hook.
        """
        if not callable(hook):
            raise TypeError(f"register_forward_hook: hook must be callable, got {type(hook).__name__}")
        hooks = self.__dict__.get("_forward_hooks")
        if hooks is None:
            hooks = []
            object.__setattr__(self, "_forward_hooks", hooks)
        hooks.append(hook)
        return HookHandle(hooks, hook)

    def register_parameter(self, name: str, param) -> None:
        """Add `param` (a Parameter, or None for a slot without one) under `name`
        (torch.nn.Module.register_parameter).

        Raises:
            TypeError: param is neither a Parameter nor None.
        """
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def to_empty(self, *, device=None, recurse: bool = True) -> "Module":
        """self (torch.nn.Module.to_empty): minigpt's parameters always hold memory on the CPU, so
        there is nothing to allocate; the values stay as they are."""
        check_device(device, "to_empty")
        return self

    # ---- walking the tree ---------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """The direct submodules with their attribute names, in assignment order."""
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        """The direct submodules, in assignment order."""
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "", _seen: set | None = None) -> Iterator[tuple[str, "Module"]]:
        """This module (name `prefix`, '' at the top) and every submodule, depth first, each once."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self) -> Iterator["Module"]:
        """This module and every submodule, depth first, each once."""
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name (`trf_blocks.0.att.W_query.weight`).

        Args:
            prefix: prepended to every name, with a dot.
            remove_duplicate: a parameter shared by two modules (a tied output head) is yielded
                once, under its first name; False yields every name (as `state_dict` does).
        """
        seen = set()
        for module_name, module in self._named_modules_all(prefix):
            for name, parameter in module._parameters.items():
                if remove_duplicate:
                    if id(parameter) in seen:
                        continue
                    seen.add(id(parameter))
                yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter once, in registration order (what an optimizer receives)."""
        for _, parameter in self.named_parameters():
            yield parameter

    def _named_modules_all(self, prefix: str) -> Iterator[tuple[str, "Module"]]:
        """Like named_modules, but a module reachable by two paths is yielded under both."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._named_modules_all(f"{prefix}.{name}" if prefix else name)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """The number of scalar weights, each shared parameter counted once (book ch. 4.6).

        Args:
            trainable_only: count only parameters with `requires_grad=True`.
        """
        return sum(p.data.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (dropout active) on this module and every submodule; returns self."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Set evaluation mode: every dropout becomes the identity. Same as `train(False)`."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter (backward accumulates into `.grad`).

        Args:
            set_to_none: set `.grad = None` (PyTorch's default, frees the memory); False fills
                the existing arrays with zeros instead.
        """
        for parameter in self.parameters():
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.fill(0)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (False) or unfreeze (True) every parameter of this module; returns self."""
        for parameter in self.parameters():
            parameter.requires_grad = requires_grad
        return self

    def to(self, *args, dtype=None, device=None) -> "Module":
        """Move to a device and/or convert to a floating dtype, in place on the module; returns self.

        `model.to(device)` is the book's call (chapter 5: `model.to(device)`, no assignment
        needed); minigpt runs on the CPU only, so "cpu" (or a device object that prints as "cpu")
        is accepted and changes nothing. `model.to(np.float64)` converts every parameter and
        every floating buffer, to run a model in float64 for exact comparisons and gradient
        checks. Parameters shared between modules stay shared; gradients are dropped when the
        dtype changes.

        NOTE: a dtype change gives each parameter a new array, so an optimizer built before
        `to()` would update the old arrays: build the optimizer after converting.

        Args:
            *args: a device ("cpu", "cpu:0", a torch-like device object) and/or a dtype, in any order.
            dtype, device: the same, by keyword.

        Raises:
            RuntimeError: a device other than the CPU (the message says that minigpt runs on the
                CPU), as `autograd.Tensor.to`.
            TypeError: a dtype that is not floating point, or an argument that is neither.
            ImportError: `torch.bfloat16` without the ml_dtypes package.

        `torch.bfloat16` rounds every value to bfloat16 and keeps float32 arrays: stored
        precision bfloat16, computed in float32 (autograd/bf16.py).

        References: torch.nn.Module.to.
        """
        for arg in args:
            if isinstance(arg, (str, autograd_device)):
                device = arg
            else:
                dtype = arg
        if device is not None:
            check_device(device, f"{type(self).__name__}.to")
        if dtype is None:
            return self
        if is_bfloat16(dtype):
            return self._round_to_bfloat16()
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"Module.to: expected a device ('cpu') or a floating dtype, got {dtype!r}") from None
        if dtype.kind != "f":
            raise TypeError(f"Module.to: dtype must be floating point (float32, float64), got {dtype}")
        for parameter in self.parameters():
            if parameter.data.dtype != dtype:
                parameter.data = parameter.data.astype(dtype)
                parameter.grad = None
        for module in self.modules():
            for name in module._buffers:
                buffer = getattr(module, name, None)
                if buffer is not None and buffer.data.dtype.kind == "f" and buffer.data.dtype != dtype:
                    buffer.data = buffer.data.astype(dtype)  # torch converts floating buffers only
        return self

    def _round_to_bfloat16(self) -> "Module":
        """`to(torch.bfloat16)`: round every parameter and floating buffer to bfloat16, kept in
        float32 arrays (the rule of autograd/bf16.py); gradients are dropped."""
        for parameter in self.parameters():
            parameter.data = round_to_bfloat16(parameter.data)
            parameter.grad = None
        for module in self.modules():
            for name in module._buffers:
                buffer = getattr(module, name, None)
                if buffer is not None and buffer.data.dtype.kind == "f":
                    buffer.data = round_to_bfloat16(buffer.data)
        return self

    def apply(self, function) -> "Module":
        """Call `function(module)` on every submodule and then on self (as PyTorch); returns self."""
        for child in self.children():
            child.apply(function)
        function(self)
        return self

    # ---- state dict ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter's array by dotted name, then every persistent buffer's (torch's order
        within a module: parameters, then buffers); a tied parameter appears under each of its names.

        The arrays are the parameters' own (no copy), as PyTorch's state_dict shares storage:
        copy them to keep a snapshot that later training steps do not change.
        """
        state = {name: parameter.data for name, parameter in self.named_parameters(remove_duplicate=False)}
        state.update({name: buffer.data for name, buffer in self._persistent_buffers().items()})
        return state

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into the parameters, in place (`param.data[...] = value`).

        Every key is checked before anything is copied, so a failed load leaves the model as it
        was. Values are cast to each parameter's dtype. Keys the modules declare as ignorable
        (the book's causal `mask` buffers) are skipped silently.

        Args:
            state_dict: mapping from dotted name to an array, Tensor or nested list.
            strict: when True, a missing or unexpected key is an error; when False they are
                skipped and returned. A shape mismatch is always an error.

        Returns:
            IncompatibleKeys(missing_keys, unexpected_keys), lists of names.

        Persistent buffers (`register_buffer`) are loaded like parameters.

        Raises:
            KeyError: strict and some keys are missing or unexpected (all of them are named).
            ValueError: a value's shape differs from its parameter's (naming both shapes), a
                value is not numeric, or two names of one tied parameter get different values.

        References: torch.nn.Module.load_state_dict.
        """
        own = dict(self.named_parameters(remove_duplicate=False))
        own.update(self._persistent_buffers())
        ignorable = self._ignorable_state_keys()
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own and name not in ignorable]
        if strict and (missing or unexpected):
            problems = []
            if missing:
                problems.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected keys: {', '.join(unexpected)}")
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        arrays = {}
        mismatched = []
        for name, parameter in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            array = value.data if isinstance(value, Tensor) else np.asarray(value)
            if is_bfloat16(array.dtype):  # read from a BF16 file: exact in float32
                array = array.astype(np.float32)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"load_state_dict: {name} must be numeric, got dtype {array.dtype}")
            if array.shape != parameter.data.shape:
                mismatched.append(f"{name}: checkpoint has shape {array.shape}, model has {parameter.data.shape}")
            arrays[name] = array
        if mismatched:
            raise ValueError(f"load_state_dict into {type(self).__name__}: shape mismatch for " + "; ".join(mismatched))
        first_name = {}  # id(parameter) -> the first key that fills it
        for name, array in arrays.items():
            shared = first_name.setdefault(id(own[name]), name)
            # A parameter shared under two names (a tied output head) cannot take two values.
            if shared != name and not np.array_equal(arrays[shared], array, equal_nan=True):
                raise ValueError(
                    f"load_state_dict: {shared} and {name} are one shared (tied) parameter, "
                    "but the state dict gives them different values"
                )
        for name, array in arrays.items():
            # In place: an optimizer may hold `.data` as a view into its flat buffer.
            own[name].data[...] = array
        return IncompatibleKeys(missing, unexpected)

    def _ignorable_state_keys(self) -> set:
        keys = set()
        for module_name, module in self._named_modules_all(""):
            for local in module._ignored_state_keys:
                keys.add(f"{module_name}.{local}" if module_name else local)
        return keys

    # ---- printing -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The arguments shown in the module's line of the repr tree (override in layers)."""
        return ""

    def __repr__(self) -> str:
        """A tree, one line per module, as PyTorch prints it: the layer's `extra_repr()` lines, then
        `(name): child` for each child, indented two spaces per level:

            NeuralNetwork(
              (layers): Sequential(
                (0): Linear(in_features=50, out_features=30, bias=True)
                (1): ReLU()
              )
            )

        References: torch.nn.Module.__repr__ (PyTorch 2.13).
        """
        return _tree(type(self).__name__, self.extra_repr(),
                     [f"({name}): " + _indent(repr(child)) for name, child in self._modules.items()])


def _tree(name: str, extra: str, child_lines: list) -> str:
    """`Name(extra)` for a leaf with one line of extra, else the extra lines and the children's
    lines, two spaces in, between `Name(` and `)` (torch.nn.Module.__repr__'s layout)."""
    lines = (extra.split("\n") if extra else []) + child_lines
    if not lines:
        return f"{name}()"
    if not child_lines and len(lines) == 1:
        return f"{name}({lines[0]})"
    return f"{name}(\n  " + "\n  ".join(lines) + "\n)"


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


class Sequential(Module):
    """Modules applied one after another; children are named '0', '1', ... (torch.nn.Sequential).

    Example (the book's FeedForward, ch. 4.3):
        >>> layers = Sequential(Linear(768, 3072), GELU(), Linear(3072, 768))
        >>> layers[0].weight.shape
        (3072, 768)
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {index} must be a Module, got {type(module).__name__}")
            setattr(self, str(index), module)

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(Module):
    """A list of modules that registers them (named '0', '1', ...); not callable (torch.nn.ModuleList).

    Example (the book's MultiHeadAttentionWrapper, ch. 3.6.1):
        >>> heads = ModuleList([CausalAttention(3, 2, 6, 0.0) for _ in range(2)])
    """

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> "ModuleList":
        """Add a module at the end; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        """Append every module of an iterable; returns self."""
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __repr__(self) -> str:
        """As PyTorch prints a ModuleList: a run of equal neighbours once, `(0-11): 12 x Block(...)`.

        References: torch.nn.ModuleList.__repr__ (PyTorch 2.13; a Sequential prints every child).
        """
        runs = []  # [first index, last index, repr] of each run of equal reprs
        for number, child in enumerate(self._modules.values()):
            text = repr(child)
            if runs and runs[-1][2] == text:
                runs[-1][1] = number
            else:
                runs.append([number, number, text])
        lines = [f"({first}): " + _indent(text) if first == last else f"({first}-{last}): {last - first + 1} x " + _indent(text)
                 for first, last, text in runs]
        return _tree(type(self).__name__, "", lines)
