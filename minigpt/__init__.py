"""minigpt: a GPT language model built from scratch on NumPy alone.

The engine is the sibling package `autograd` (Tensor, backward rules, fused functions); minigpt
builds on it, following Raschka's "Build a Large Language Model (From Scratch)" with PyTorch's
names. Files, in reading order: `nn/` (Module and layers, attention, the transformer block),
`model.py` (GPTConfig, presets, GPTModel), `pretrained.py` (GPT-2 weights from safetensors),
then the tokenizer, data, optimizer and generation modules.

Nothing is imported here eagerly, so `import minigpt.tokenizer` does not pay for the model:

    >>> from minigpt.model import GPTModel
    >>> model = GPTModel("char", rng=123)
"""

__version__ = "0.1.0"
