"""minigpt: a GPT language model built from scratch on NumPy alone.

The engine is the sibling package `autograd` (Tensor, backward rules, fused functions); minigpt
builds on it, following Raschka's "Build a Large Language Model (From Scratch)" with PyTorch's
names. Files, in reading order: `nn/` (Module and layers, attention, the transformer block),
`config.py` (GPTConfig, presets), `model.py` (GPTModel), `hf_weights.py` and `pretrained.py`
(GPT-2 weights from safetensors), then the tokenizers (`tokenizer_base.py`, `tokenizer.py`,
`bpe.py`), data, optimizer, generation, `train.py` (the book's loop) and `trainer.py` (the
loop a real run needs). Benchmarks live outside the package, in the repository's `scripts/`.

Nothing is imported here eagerly, so `import minigpt.tokenizer` does not pay for the model:

    >>> from minigpt.model import GPTModel
    >>> model = GPTModel("char", rng=123)
"""

__version__ = "0.1.0"
