"""`minigpt.nn.utils`: torch.nn.utils's place for what the book calls from it.

Appendix D clips gradients with `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)`;
with `from minigpt import nn` that is `nn.utils.clip_grad_norm_(...)`. The function lives with the
optimizers (minigpt/optim.py) and is re-exported here, not copied.
"""

from minigpt.optim import clip_grad_norm_

__all__ = ["clip_grad_norm_"]
