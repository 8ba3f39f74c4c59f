"""`torch.autograd` under `import autograd as torch`: `torch.autograd.grad(...)`, and for the
book's `from torch.autograd import grad` the import line `from autograd.autograd import grad`.

A namespace only: the functions live in `autograd/backward.py` and `autograd/function.py`.

References: torch.autograd (grad, Function, no_grad, enable_grad); book appendix A.4.
"""

from autograd.backward import grad
from autograd.function import Function, enable_grad, no_grad

__all__ = ["grad", "Function", "no_grad", "enable_grad"]
