"""`torch.nn`, `torch.optim` and `torch.utils.data` for the book's code, after `from minigpt import nn`.

The book writes `torch.nn.Embedding(...)` (chapter 2), `torch.nn.Parameter` and
`torch.nn.Dropout` (chapter 3), `torch.nn.functional.cross_entropy` and `torch.optim.AdamW`
(chapter 5), `torch.nn.Module` and `torch.optim.SGD` (appendix A),
`torch.nn.utils.clip_grad_norm_` (appendix D). With `import autograd as torch`, those names
would be missing: `autograd` is the engine and never imports `minigpt` (DESIGN.md). So the
reader's second import line, `from minigpt import nn`, adds them to the `autograd` namespace:

    autograd.nn           -> minigpt.nn       (torch.nn, with nn.functional and nn.utils)
    autograd.optim        -> minigpt.optim    (torch.optim: AdamW, SGD)
    autograd.utils.data   -> minigpt.data     (torch.utils.data: Dataset, DataLoader)

after which the book's lines run unchanged. Names `autograd` defines itself are never replaced.
`autograd` still has no dependency on `minigpt`: the names exist only once minigpt.nn has been
imported, which the book's import lines always do.

References: PyTorch's module layout (torch.nn, torch.optim, torch.utils.data).
"""

from __future__ import annotations

import sys
import types

import autograd

__all__ = ["register_torch_names"]


def register_torch_names() -> None:
    """Attach minigpt.nn, minigpt.optim and minigpt.data to `autograd` as torch's nn, optim, utils.data.

    Idempotent; an attribute `autograd` already has is left alone.
    """
    from minigpt import data, optim  # imported here: minigpt.nn itself does not need them

    if not hasattr(autograd, "nn"):
        autograd.nn = sys.modules["minigpt.nn"]
    if not hasattr(autograd, "optim"):
        autograd.optim = optim
    if not hasattr(autograd, "utils"):
        utils = types.ModuleType("autograd.utils", "torch.utils's place: `data` is minigpt.data (added by minigpt.nn).")
        utils.data = data
        autograd.utils = utils
