"""minigpt.nn: the layers of a GPT, with PyTorch's torch.nn names and the book's attribute names.

Files, in reading order: `module.py` (Parameter, Module, Sequential, ModuleList), `layers.py`
(Linear, Embedding, LayerNorm, GELU, Dropout, FeedForward), `attention.py` (the book's chapter-3
attention classes and MultiHeadAttention), `transformer.py` (TransformerBlock), `lora.py` (LoRALayer, LinearWithLoRA,
replace_linear_with_lora, merge_lora: appendix E).
"""

from minigpt.nn.module import IncompatibleKeys, Module, ModuleList, Parameter, Sequential
from minigpt.nn.layers import GELU, INIT_STD, Dropout, Embedding, FeedForward, LayerNorm, Linear, skip_init
from minigpt.nn.attention import (
    CausalAttention,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
    simplified_self_attention,
)
from minigpt.nn.transformer import TransformerBlock
from minigpt.nn.lora import LinearWithLoRA, LoRALayer, merge_lora, replace_linear_with_lora

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
    "Dropout",
    "FeedForward",
    "INIT_STD",
    "skip_init",
    "simplified_self_attention",
    "SelfAttention_v1",
    "SelfAttention_v2",
    "CausalAttention",
    "MultiHeadAttentionWrapper",
    "MultiHeadAttention",
    "TransformerBlock",
    "LoRALayer",
    "LinearWithLoRA",
    "replace_linear_with_lora",
    "merge_lora",
]
