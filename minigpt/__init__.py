"""minigpt: a GPT language model built from scratch on NumPy alone.

The engine is the sibling package `autograd` (Tensor, backward rules, fused functions); minigpt
builds on it, following Raschka's "Build a Large Language Model (From Scratch)" with PyTorch's
names, in the book's order: the tokenizers and data (ch. 2), `nn/` (ch. 3-4: layers, attention,
the transformer block), the optimizer and generation, `config.py` and `model.py` (GPTModel),
the GPT-2 weights (`hf_weights.py`, `pretrained.py`), `train.py` (ch. 5 and appendix D) and
`trainer.py` (the loop a real run needs), `finetune/` (ch. 6-7), `cli/` (the commands). The
README's "Files, in reading order" lists every file. Benchmarks live outside the package, in
the repository's `scripts/`.

Nothing is imported here eagerly, so `import minigpt.tokenizer` does not pay for the model:

    >>> from minigpt.model import GPTModel
    >>> model = GPTModel("char", rng=123)
"""

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that `import minigpt` pays for none of them: the models beyond
# GPT-2 (`from minigpt import Llama3Model, Qwen3Model`) and the book's imports `from minigpt import
# Llama3Tokenizer, ChatFormat, Qwen3Tokenizer` (its llama3.py / qwen3.py with only the imports changed).
_LAZY = {
    "Llama3Model": "minigpt.llama3",
    "Qwen3Model": "minigpt.qwen3",
    "Llama3Tokenizer": "minigpt.llama3_tokenizer",
    "ChatFormat": "minigpt.llama3_tokenizer",
    "Qwen3Tokenizer": "minigpt.qwen3_tokenizer",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'minigpt' has no attribute {name!r}")
