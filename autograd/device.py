"""Devices under PyTorch's names: `torch.device("cpu")`, and the check that a device is the CPU.

minigpt computes on the CPU only (NumPy). A device type PyTorch knows ("cuda", "mps", ...) can be
named, so that the book's `torch.device("cuda" if torch.cuda.is_available() else "cpu")` runs;
moving a tensor or a module to anything but the CPU raises a RuntimeError that says so.

This module sits below `tensor.py` (which checks `tensor(..., device=)` and `Tensor.to(device)`)
and `creation.py` (the factories' `device=` argument), so that both import it one way.

References: torch.device; book appendix A.9 (selecting a device).
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------------------------
# Devices: minigpt runs on the CPU
# --------------------------------------------------------------------------------------------

_DEVICE_PATTERN = re.compile(r"^(?P<type>[a-z]+)(:(?P<index>\d+))?$")
# The device types PyTorch knows (torch.device raises for any other): they can be named here.
PYTORCH_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "xla", "meta", "hip", "hpu", "mtia", "ipu", "vulkan", "ve", "maia", "lazy")


class device:  # noqa: N801 - torch.device's name
    """A device name, as `torch.device("cpu")`; minigpt computes on the CPU only.

    A device type PyTorch knows ("cpu", "cuda", "cuda:0", "mps"...) can be named, as in PyTorch, so
    that the book's `torch.device("cuda" if torch.cuda.is_available() else "cpu")` runs; moving a
    tensor or module to a device other than the CPU raises (see `check_device`). A type PyTorch does
    not know ("tpu") raises already here, as `torch.device` does.

    Args:
        type: "cpu", "cuda", "mps"... optionally with ":index", or another `device`.
        index: the device number (None for the default one).

    Raises:
        ValueError: a malformed name. TypeError: not a string or device. RuntimeError: a device
            type PyTorch does not know (with the CPU-only message of `check_device`).

    References: torch.device.
    """

    __slots__ = ("type", "index")

    def __init__(self, type: str | device, index: int | None = None):  # noqa: A002 - torch's name
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string such as 'cpu', got {type!r}")
        match = _DEVICE_PATTERN.match(type)
        if match is None:
            raise ValueError(f"device: expected a device string such as 'cpu' or 'cuda:0', got {type!r}")
        if match["type"] not in PYTORCH_DEVICE_TYPES:
            raise RuntimeError(_not_available_message("device", type))
        self.type = match["type"]
        self.index = int(match["index"]) if match["index"] is not None else index

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except ValueError:
                return False
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"


CPU = device("cpu")


def check_device(value, function: str) -> device:
    """Return `value` as a CPU `device`; None means the CPU.

    Raises:
        RuntimeError: the device is not the CPU (minigpt has no GPU backend).
        TypeError / ValueError: `value` is not a device name.
    """
    if value is None:
        return CPU
    resolved = value if isinstance(value, device) else device(value)
    if resolved.type != "cpu":
        raise RuntimeError(_not_available_message(function, str(resolved)))
    return resolved


def _not_available_message(function: str, name: str) -> str:
    return (
        f"{function}: device {name!r} is not available: minigpt runs on the CPU only "
        "(NumPy), use device 'cpu' (the book's torch.device('cuda' if torch.cuda.is_available() "
        "else 'cpu') picks it)"
    )


__all__ = ["device", "CPU", "check_device", "PYTORCH_DEVICE_TYPES"]
