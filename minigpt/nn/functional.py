"""`minigpt.nn.functional`: torch.nn.functional's place, the engine's `autograd.functional`.

The book writes `torch.nn.functional.cross_entropy(...)` (chapter 5) and
`import torch.nn.functional as F` (appendix A). With `from minigpt import nn`, the first becomes
`nn.functional.cross_entropy(...)`; both names reach the same functions (and the same backward
rules) as `import autograd.functional as F`. Nothing is defined here: see autograd/functional.py.
"""

from autograd.functional import *  # noqa: F401,F403 - a re-export, one set of functions
from autograd.functional import __all__  # noqa: F401
