"""Checkpoints: a model, its optimizer and the training state in one safetensors file.

Layout of `checkpoint.safetensors`:
- tensors `model.<name>`: the model's state_dict (book/PyTorch names, e.g.
  `model.trf_blocks.0.att.W_query.weight`). A tensor that is the same array as an earlier one
  (a tied output head) is stored once and listed under `aliases` in the metadata.
- tensors `optimizer.<key>`: the optimizer's state arrays (AdamW's moments, ...).
- metadata key `minigpt`: one JSON document with `format_version`, the model config, the
  optimizer's non-array state, and whatever the trainer adds (step, tokens seen, RNG and data
  loader states, tokenizer, loss history).

The file is written to a temporary name beside the target, flushed to disk, and renamed over it
(`os.replace` is atomic on POSIX), so an interrupted save never destroys the last good checkpoint
and never leaves a half-written file under the real name.

References: the safetensors format (Hugging Face), chosen because the book's readers can open the
model part with `safetensors.torch.load_file` and load it into the book's PyTorch GPTModel.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.safetensors"


def atomic_save_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` to a safetensors file at `path` through a temporary file and a rename.

    Args:
        path: the destination file; its directory must exist.
        tensors: name -> array (made contiguous here).
        metadata: str -> str pairs stored in the file header.

    Raises:
        OSError: the directory is missing or not writable (the old file, if any, is untouched).
    """
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    os.close(handle)
    try:
        save_file({name: np.ascontiguousarray(array) for name, array in tensors.items()}, temporary, metadata=metadata)
        # mkstemp creates the file readable by its owner only; give the checkpoint the usual
        # permissions of a new file (0o666 minus the umask), as open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # the data is on disk before the rename makes it visible
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Flush a directory entry (the rename) to disk, where the OS allows it (POSIX)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(descriptor)


def save_checkpoint(path: str, model_state: dict, optimizer_state: tuple[dict, dict] | None, metadata: dict) -> None:
    """Save a model state, an optimizer state and JSON metadata into one safetensors file.

    Args:
        path: destination file (e.g. `runs/verdict/checkpoint.safetensors`).
        model_state: name -> np.ndarray, from `model.state_dict()`.
        optimizer_state: (arrays, json_metadata) from `minigpt.optim.flatten_state_dict`, or None.
        metadata: JSON-serialisable dict (config, step, RNG states, ...).

    Raises:
        TypeError: metadata that JSON cannot encode. OSError: see `atomic_save_safetensors`.
    """
    tensors, aliases, first_name_of = {}, {}, {}
    for name, array in model_state.items():
        previous = first_name_of.get(id(array))
        if previous is not None:
            aliases[name] = previous  # tied weights: store the shared array once
            continue
        first_name_of[id(array)] = name
        tensors[f"model.{name}"] = array
    document = {"format_version": FORMAT_VERSION, "aliases": aliases, **metadata}
    if optimizer_state is not None:
        arrays, optimizer_metadata = optimizer_state
        tensors.update({f"optimizer.{key}": value for key, value in arrays.items()})
        document["optimizer"] = optimizer_metadata
    atomic_save_safetensors(path, tensors, {"minigpt": json.dumps(document)})


def load_checkpoint(path: str) -> tuple[dict, tuple[dict, dict] | None, dict]:
    """Read a file written by `save_checkpoint`.

    Returns:
        (model_state, optimizer_state, metadata): model_state name -> np.ndarray (tied names
        point to the same array), optimizer_state (arrays, json_metadata) or None, and the
        metadata dict.

    Raises:
        FileNotFoundError: no file at `path`. ValueError: not a safetensors file (or a damaged
        one), not a minigpt checkpoint, or a newer format version than this code reads.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    model_state, optimizer_arrays = {}, {}
    try:
        file = safe_open(path, framework="np")
    except SafetensorError as error:
        raise ValueError(f"{path!r} is not a safetensors file, or it is damaged ({error})") from None
    with file:
        header = file.metadata() or {}
        if "minigpt" not in header:
            raise ValueError(f"{path!r} is a safetensors file but not a minigpt checkpoint (no 'minigpt' metadata)")
        try:
            metadata = json.loads(header["minigpt"])
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r}: its 'minigpt' metadata is not valid JSON ({error})") from None
        if metadata.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path!r} has checkpoint format {metadata['format_version']}; this minigpt reads up to {FORMAT_VERSION}")
        for key in file.keys():
            if key.startswith("model."):
                model_state[key[len("model."):]] = file.get_tensor(key)
            elif key.startswith("optimizer."):
                optimizer_arrays[key[len("optimizer."):]] = file.get_tensor(key)
    for name, target in metadata.pop("aliases", {}).items():
        model_state[name] = model_state[target]
    optimizer_metadata = metadata.pop("optimizer", None)
    optimizer_state = None if optimizer_metadata is None else (optimizer_arrays, optimizer_metadata)
    return model_state, optimizer_state, metadata
