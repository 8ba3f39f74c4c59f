"""Make freed NumPy buffers cheap to reuse: a glibc malloc setting for training loops.

A training step allocates and frees the same large arrays (activations, gradients) every step.
By default glibc serves blocks above a moving threshold (128 KiB to 32 MiB) with mmap and gives
them back to the kernel when freed, and trims the top of the heap; the next step then pays a page
fault and a kernel zero-fill for every 4 KiB page again. On the book's 124M model that is
hundreds of thousands of page faults per step and about 10 % of its time (measured: 2.9 s ->
2.6 s forward+backward, peak memory unchanged, since the same blocks are reused).

`keep_freed_memory()` sets M_MMAP_THRESHOLD and M_TRIM_THRESHOLD so that freed blocks stay in
the process for reuse. It changes the whole process (memory no longer shrinks after a peak).
Elsewhere than glibc (macOS, musl) it does nothing.

The process settings of a training process. `apply_process_settings()` makes this call and
`autograd.parallel.set_openblas_thread_timeout()` (idle BLAS threads free their core), once per
process. Nothing is changed on import: the settings are applied when the first optimizer of the
process is built (`minigpt.optim.Optimizer.__init__`: a training loop is about to run), so that
a reader's own training loop (the book's `train_model_simple`) runs as fast as `minigpt train`
(measured: about 7 % faster steps on book-124M), and `Tensor.backward()` runs nothing but the
gradient walk. Opt out before building the optimizer with `disable_process_settings()`, or with
the environment variable `MINIGPT_PROCESS_SETTINGS=0`: for a long-lived process that must give
memory back after training, or a program that runs NumPy products in other threads at the
moment it builds its optimizer (OpenBLAS's threads are restarted then).

References: mallopt(3) (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD); glibc malloc's dynamic mmap threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# The environment variable that opts out of the process settings: "0" (or "false", "no", "off").
PROCESS_SETTINGS_ENV = "MINIGPT_PROCESS_SETTINGS"

# True until the process settings were applied or declined (apply_process_settings returns at
# once after that).
settings_pending = True

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_ONE_GIB = 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 1 GiB for reuse instead of returning them to the kernel.

    Returns:
        True when the setting was applied (glibc), False where it is not available.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Blocks below 1 GiB come from the heap (not mmap), and the heap is trimmed only when more
    # than 2 GiB - 1 at its top is free: steady-state training reuses the same memory.
    applied = mallopt(_M_MMAP_THRESHOLD, _ONE_GIB) == 1
    applied &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return applied


def apply_process_settings() -> bool:
    """Apply the training process settings once: `keep_freed_memory()` and OpenBLAS's idle timeout.

    Called when an optimizer is built (`minigpt.optim.Optimizer`; see the module docstring);
    calling it again does nothing. Does nothing either when `disable_process_settings()` was called first or
    the environment variable MINIGPT_PROCESS_SETTINGS is "0", "false", "no" or "off".

    Returns:
        True when the settings were applied by this call, False otherwise.
    """
    global settings_pending
    if not settings_pending:
        return False
    settings_pending = False
    if os.environ.get(PROCESS_SETTINGS_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    from autograd.parallel import set_openblas_thread_timeout

    keep_freed_memory()
    set_openblas_thread_timeout()
    return True


def disable_process_settings() -> None:
    """Opt out of the process settings that building an optimizer would apply (call before it).

    Settings already applied stay: they cannot be undone in a running process.
    """
    global settings_pending
    settings_pending = False
