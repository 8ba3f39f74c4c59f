"""`save(obj, path)` / `load(path)`: state dicts in a safetensors file, as `torch.save` / `torch.load`.

The book saves `model.state_dict()` (ch. 5.4), and a model and its optimizer together:

    torch.save({"model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict()}, "model_and_optimizer.pth")
    checkpoint = torch.load("model_and_optimizer.pth", map_location=device, weights_only=True)

PyTorch pickles the object; a pickle can run any code when loaded. minigpt writes a safetensors
file instead (plain arrays plus a JSON header) and accepts only what a state dict is made of:
dicts, lists and tuples of arrays, Tensors and plain values (str, int, float, bool, None). Every
array is one safetensors tensor named by its path of keys (`model_state_dict.tok_emb.weight`,
`optimizer_state_dict.state.0.exp_avg`); the nesting, the key types (the optimizer's state is
keyed by int), tuples and the plain values are kept in the header's JSON under `minigpt.object`,
so `load(save(x))` gives back the same structure: arrays as they were saved (np.ndarray), Tensors
as Tensors (without requires_grad, as torch.load returns them).

The file name is up to the caller (the book's ".pth" works; ".safetensors" says what it is).

References: torch.save / torch.load (weights_only=True is PyTorch's safe mode); the safetensors
format (Hugging Face); book ch. 5.4 "Loading and saving model weights in PyTorch".
"""

from __future__ import annotations

import json
import numbers
import os

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save as save_bytes
from safetensors.numpy import save_file

from autograd.device import check_device
from autograd.tensor import Tensor

METADATA_KEY = "minigpt.object"
FORMAT_VERSION = 1


def _encode(value, path: str, arrays: dict) -> dict:
    """A JSON-able description of `value`; arrays go into `arrays` under a name built from `path`."""
    if isinstance(value, (Tensor, np.ndarray)):
        array = value.data if isinstance(value, Tensor) else value
        if array.dtype.kind not in "biuf":
            raise TypeError(f"save: the array at {path or 'the top'} has dtype {array.dtype}; only bool, integer and float arrays can be saved")
        name = path or "tensor"
        while name in arrays:  # two paths that join to one name ("a.b" vs "a" -> "b")
            name += "'"
        # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")
        return {"array": name, "tensor": isinstance(value, Tensor)}
    if value is None or isinstance(value, (bool, str)):
        return {"value": value}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"value": value.item()}
    if isinstance(value, numbers.Integral):
        return {"value": int(value)}
    if isinstance(value, numbers.Real):
        return {"value": float(value)}
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not (key is None or isinstance(key, (str, int, float, bool))):
                raise TypeError(f"save: dict keys must be str, int, float, bool or None, got {type(key).__name__} at {path or 'the top'}")
            child = f"{path}.{key}" if path else str(key)
            items.append([key, _encode(item, child, arrays)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(item, f"{path}.{i}" if path else str(i), arrays) for i, item in enumerate(value)]}
    raise TypeError(
        f"save: cannot save a {type(value).__module__}.{type(value).__name__} at {path or 'the top'}: "
        "only state dicts are saved (dicts, lists and tuples of arrays, Tensors, str, int, float, "
        "bool, None); pickling arbitrary objects is refused because loading a pickle can run code"
    )


def _decode(node: dict, arrays: dict):
    """Rebuild the object that `_encode` described."""
    if "array" in node:
        array = arrays[node["array"]]
        return Tensor._make(array, False) if node["tensor"] else array
    if "value" in node:
        return node["value"]
    if "dict" in node:
        return {key: _decode(item, arrays) for key, item in node["dict"]}
    if "list" in node:
        return [_decode(item, arrays) for item in node["list"]]
    if "tuple" in node:
        return tuple(_decode(item, arrays) for item in node["tuple"])
    raise ValueError(f"load: unknown entry in the file's structure: {sorted(node)}")


def _is_path(f) -> bool:
    return isinstance(f, (str, os.PathLike))


def _check_file_argument(f, function: str, method: str) -> None:
    """Raise TypeError unless `f` is a path or a binary file object with `method` (read/write)."""
    if not _is_path(f) and not callable(getattr(f, method, None)):
        raise TypeError(
            f"{function}: f must be a file path (str or os.PathLike) or a binary file object with "
            f".{method}() (such as io.BytesIO), got {type(f).__name__}"
        )


def save(obj, f) -> None:
    """Save a state dict (or a dict/list of them) to the safetensors file `f` (torch.save).

    Args:
        obj: a dict, list or tuple (nested as deep as needed) of np.ndarrays, Tensors and plain
            values (str, int, float, bool, None; NumPy scalars become Python numbers), e.g.
            `model.state_dict()`, `optimizer.state_dict()`, or a dict holding both.
        f: the file path (str or os.PathLike; an existing file is replaced), or a binary file
            object with `.write()` (io.BytesIO, an open file), which receives the file's bytes.

    Raises:
        TypeError: `obj` holds anything else (a module, a function, an object array...): nothing
            is written. PyTorch would pickle it; minigpt refuses, since a pickle runs code on load.
            Also when `f` is neither a path nor a file object.
        FileNotFoundError: the folder of the path `f` does not exist.
        OSError: the file cannot be written.

    References: torch.save; book ch. 5.4.
    """
    _check_file_argument(f, "save", "write")
    arrays: dict[str, np.ndarray] = {}
    structure = _encode(obj, "", arrays)
    metadata = {METADATA_KEY: json.dumps({"format_version": FORMAT_VERSION, "object": structure})}
    if not _is_path(f):
        f.write(save_bytes(arrays, metadata=metadata))
        return
    folder = os.path.dirname(os.path.abspath(f))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: cannot write {os.fspath(f)}: no such folder: {folder}")
    save_file(arrays, os.fspath(f), metadata=metadata)


def _metadata_from_bytes(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file held in memory.

    The format: 8 bytes, the header's length (little-endian u64), then the header, a JSON object
    whose `__metadata__` entry maps str to str (safetensors' format specification).

    Raises:
        ValueError: the bytes do not start with a safetensors header.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"read() returned {type(data).__name__}, expected bytes (open the file in binary mode)")
    length = int.from_bytes(bytes(data[:8]), "little")
    if len(data) < 8 or length > len(data) - 8:
        raise ValueError("too short for its header")
    try:
        header = json.loads(bytes(data[8:8 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the header is not JSON: {error}") from None
    return header.get("__metadata__") or {} if isinstance(header, dict) else {}


def load(f, map_location=None, weights_only: bool = True, mmap=None):
    """Load what `save` wrote (torch.load).

    Args:
        f: the file path (str or os.PathLike), or a binary file object with `.read()` (io.BytesIO,
            an open file) positioned at the start of what `save` wrote.
        map_location: accepted as the book passes it; must name the CPU ("cpu", a CPU `device`,
            or None): minigpt runs on the CPU only.
        weights_only: accepted for the book's `weights_only=True`; loading is always weights-only
            here (no pickle), so False changes nothing.
        mmap: accepted and ignored (the arrays are read into memory).

    Returns:
        The saved object: dicts, lists, tuples, np.ndarrays (saved as arrays), Tensors (saved as
        Tensors, with requires_grad=False) and plain values.

    Raises:
        TypeError: `f` is neither a path nor a file object.
        FileNotFoundError: no such file.
        ValueError: the file is not a safetensors file written by `save` (e.g. a PyTorch pickle).
        RuntimeError: map_location names another device.

    References: torch.load.
    """
    if not isinstance(map_location, dict) and not callable(map_location):
        check_device(map_location, "load: map_location")
    _check_file_argument(f, "load", "read")
    name = os.fspath(f) if _is_path(f) else f"the {type(f).__name__} object"
    try:
        if _is_path(f):
            if not os.path.isfile(f):
                raise FileNotFoundError(f"load: no such file: {os.fspath(f)}")
            with safe_open(os.fspath(f), framework="np") as handle:
                metadata = handle.metadata() or {}
                arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        else:
            data = f.read()
            metadata, arrays = _metadata_from_bytes(data), load_bytes(data)
    except (SafetensorError, ValueError) as error:
        raise ValueError(f"load: {name} is not a safetensors file written by autograd.save ({error})") from None
    if METADATA_KEY not in metadata:
        raise ValueError(f"load: {name} is a safetensors file but was not written by autograd.save (no {METADATA_KEY!r} metadata)")
    document = json.loads(metadata[METADATA_KEY])
    return _decode(document["object"], arrays)


__all__ = ["save", "load"]
