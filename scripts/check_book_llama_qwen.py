"""Run the book's Llama 3.2 and Qwen3 code on minigpt with only the imports changed (issue 23, item 6).

The book's repository (rasbt/LLMs-from-scratch) is not part of minigpt or its CI, so this is a
manual check: it reads the book package's `llama3.py`, `qwen3.py`, `kv_cache/qwen3.py`,
`kv_cache/utils.py` and `kv_cache/generate.py`, replaces `import torch` by `import autograd as
torch` and `import torch.nn as nn` by `from minigpt import nn`, drops the tokenizer and download
imports (tiktoken, requests: the tokenizers are checked by the tokenizer tests) and the package's
relative imports, and then:

1. builds the book's `Llama3Model` and `Qwen3Model` on small configs (the book's keys, float32),
   runs a forward pass, a cross-entropy loss and `backward()`;
2. loads each book model's `state_dict()` into minigpt's `Llama3Model` / `Qwen3Model` and
   compares the logits (the same weights give the same logits, to float32 rounding);
3. generates with the book's KV-cache Qwen3 and its `generate_text_simple`, cached and uncached
   (the same tokens).

    python scripts/check_book_llama_qwen.py --book /work/book

Needs `torch.bfloat16` and `nn.Linear(..., dtype=)` (the bfloat16 work of issue 23, item 3).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import types

import numpy as np


def load_book_module(path: str, name: str) -> types.ModuleType:
    """Execute the book's file `path` with its imports changed, as a module called `name`."""
    with open(path, encoding="utf-8") as file:
        source = file.read()
    source = source.replace("import torch.nn as nn", "from minigpt import nn")
    source = source.replace("import torch\n", "import autograd as torch\n")
    source = re.sub(r"^(import tiktoken|from tiktoken\.load import .*|import requests)\n", "", source, flags=re.M)
    source = re.sub(r"^from \.[\w.]* import \([^)]*\)\n|^from \.[\w.]* import .*\n", "", source, flags=re.M)
    module = types.ModuleType(name)
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - the book's own file, read to be run
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", default="/work/book", help="a checkout of rasbt/LLMs-from-scratch")
    args = parser.parse_args(argv)
    import autograd as torch
    from minigpt import Llama3Model, Qwen3Model

    package = os.path.join(args.book, "pkg", "llms_from_scratch")
    llama = load_book_module(os.path.join(package, "llama3.py"), "book_llama3")
    qwen = load_book_module(os.path.join(package, "qwen3.py"), "book_qwen3")
    cfg_llama = dict(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, hidden_dim=48, n_kv_groups=2,
                     rope_base=500_000.0, dtype=torch.float32, rope_freq=dict(llama.LLAMA32_CONFIG_1B["rope_freq"]))
    cfg_qwen = dict(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, hidden_dim=48, head_dim=16,
                    qk_norm=True, n_kv_groups=2, rope_base=1e6, dtype=torch.float32)
    torch.manual_seed(123)
    ids = torch.tensor([[1, 5, 9, 3, 7, 2]])
    worst = 0.0
    for book_class, ours_class, cfg in ((llama.Llama3Model, Llama3Model, cfg_llama), (qwen.Qwen3Model, Qwen3Model, cfg_qwen)):
        model = book_class(cfg)
        logits = model(ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        ours = ours_class(cfg, rng=0)
        ours.load_state_dict(model.state_dict())
        difference = float(np.abs(ours(ids).data - logits.data).max())
        worst = max(worst, difference)
        print(f"book {book_class.__name__}: logits {tuple(logits.shape)}, loss {loss.item():.4f}, "
              f"gradient of tok_emb {model.tok_emb.weight.grad.shape}; minigpt's {ours_class.__name__} with its "
              f"state_dict: max |difference| {difference:.2e}")
    utils = load_book_module(os.path.join(package, "kv_cache", "utils.py"), "book_kv_utils")
    kv_qwen = load_book_module(os.path.join(package, "kv_cache", "qwen3.py"), "book_kv_qwen3")
    generate = load_book_module(os.path.join(package, "kv_cache", "generate.py"), "book_kv_generate")
    kv_qwen.KVCache = generate.KVCache = utils.KVCache  # what the dropped relative imports provided
    model = kv_qwen.Qwen3Model(cfg_qwen)
    with torch.no_grad():
        cached = generate.generate_text_simple(model, ids, 5, use_cache=True)
        uncached = generate.generate_text_simple(model, ids, 5, use_cache=False)
    same = bool((cached.numpy() == uncached.numpy()).all())
    print(f"book kv_cache Qwen3Model + generate_text_simple: cached == uncached: {same} {cached.tolist()}")
    return 0 if same and worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
