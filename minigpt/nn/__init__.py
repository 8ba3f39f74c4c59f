"""minigpt.nn: the layers of a GPT, with PyTorch's torch.nn names and the book's attribute names.

Files, in reading order: `module.py` (Parameter, Module with buffers, Sequential, ModuleList),
`layers.py` (Linear, Embedding, LayerNorm, GELU, ReLU, Sigmoid, Dropout, FeedForward), `moe.py`
(MoEFeedForward, the mixture of experts of ch04/07_moe and Qwen3), `loss.py`
(MSELoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss), `attention.py` (the book's chapter-3
attention classes and MultiHeadAttention), `transformer.py` (TransformerBlock), `lora.py`
(LoRALayer, LinearWithLoRA, replace_linear_with_lora, merge_lora: appendix E); then Llama 3's and
Qwen3's layers (book ch. 5 bonus): `rms_norm.py` (RMSNorm, Qwen3RMSNorm), `swiglu.py` (SiLU,
SwiGLUFeedForward), `rope.py` (compute_rope_params, apply_rope), `gqa.py` (GroupedQueryAttention).

As torch.nn: `nn.functional` is the engine's `autograd.functional` (torch.nn.functional) and
`nn.utils.clip_grad_norm_` the optimizers' gradient clipping (appendix D). Importing this package
also makes the book's `torch.nn.X`, `torch.optim.X` and `torch.utils.data.X` work after
`import autograd as torch` (see `torch_names.py`).
"""

from minigpt.nn.module import IncompatibleKeys, Module, ModuleList, Parameter, Sequential
from minigpt.nn.layers import (
    GELU,
    INIT_SCHEMES,
    INIT_STD,
    Dropout,
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    ReLU,
    Sigmoid,
    skip_init,
)
from minigpt.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from minigpt.nn import functional, init, utils
from minigpt.nn.torch_names import register_torch_names
from minigpt.nn.attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
    simplified_self_attention,
)
from minigpt.nn.transformer import TransformerBlock
from minigpt.nn.moe import MoEFeedForward
from minigpt.nn.lora import LinearWithLoRA, LoRALayer, merge_lora, replace_linear_with_lora
# Llama 3 and Qwen3 (issue 23): RMSNorm, SiLU, the SwiGLU feed-forward, RoPE, grouped-query attention
from minigpt.nn.rms_norm import Qwen3RMSNorm, RMSNorm
from minigpt.nn.swiglu import SiLU, SwiGLUFeedForward
from minigpt.nn.rope import apply_rope, compute_rope_params
from minigpt.nn.gqa import GroupedQueryAttention

__all__ = [
    "Parameter",
    "Module",
    "Sequential",
    "ModuleList",
    "IncompatibleKeys",
    "Linear",
    "Embedding",
    "LayerNorm",
    "GELU",
    "ReLU",
    "Sigmoid",
    "Dropout",
    "FeedForward",
    "INIT_STD",
    "INIT_SCHEMES",
    "MSELoss",
    "CrossEntropyLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "functional",
    "init",
    "utils",
    "skip_init",
    "simplified_self_attention",
    "SelfAttention_v1",
    "SelfAttention_v2",
    "CausalAttention",
    "MultiHeadAttentionWrapper",
    "MultiHeadAttention",
    "TransformerBlock",
    "MoEFeedForward",
    "LoRALayer",
    "LinearWithLoRA",
    "replace_linear_with_lora",
    "merge_lora",
    "RMSNorm",
    "Qwen3RMSNorm",
    "SiLU",
    "SwiGLUFeedForward",
    "compute_rope_params",
    "apply_rope",
    "GroupedQueryAttention",
]

register_torch_names()  # autograd.nn, .optim, .utils.data for the book's torch.nn.X (torch_names.py)
