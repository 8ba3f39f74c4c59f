"""Write PyTorch 2.13's CPU random draws as golden values for tests/test_torch_random.py (run once).

    /tmp/torchref/bin/python scripts/make_torch_random_fixtures.py [--out tests/fixtures/torch_random]

For seeds 0, 123 and 2**40 + 7, sizes 1..40 and 3001, float32 and float64, this records what
torch.rand, rand_like, randn, normal_, uniform_, randint, random_, randperm, bernoulli(_),
exponential_, multinomial, F.dropout / nn.Dropout, DataLoader(shuffle=True), random_split and
get_rng_state give after `torch.manual_seed(seed)`, plus the weights of the book's GPTModel
(ch04, a small config) after `torch.manual_seed(123)`, a training-mode forward pass (dropout) and
the book's `generate` with top_k and temperature. To keep the fixtures small, draws that minigpt
must reproduce bit for bit are stored as a SHA-256 of their bytes (16 hex digits) and their first value; the
float32 normals, which PyTorch computes with SIMD approximations of log/sin/cos, are stored whole.
Only torch and NumPy are needed (and the book's repository for the model, --book).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEEDS = [0, 123, 2**40 + 7]
SIZES = list(range(1, 41)) + [3001]
DTYPES = {"float32": torch.float32, "float64": torch.float64}
SMALL_CONFIG = {"vocab_size": 100, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2, "drop_rate": 0.1, "qkv_bias": False}


def digest(array) -> list:
    """[the first 16 hex digits of the SHA-256 of the array's bytes (C order, its dtype), its first value]."""
    array = np.ascontiguousarray(array.detach().numpy() if isinstance(array, torch.Tensor) else array)
    return [hashlib.sha256(array.tobytes()).hexdigest()[:16], array.ravel()[:1].tolist()]


def exact_draws() -> dict:
    """Every bit-exact draw, keyed "function/seed/size/dtype", as digests."""
    out = {}
    weights_rows = 3
    for seed in SEEDS:
        for size in SIZES:
            for name, dtype in DTYPES.items():
                key = f"{seed}/{size}/{name}"
                torch.manual_seed(seed)
                out[f"rand/{key}"] = digest(torch.rand(size, dtype=dtype))
                torch.manual_seed(seed)
                out[f"rand_like/{key}"] = digest(torch.rand_like(torch.empty(size, dtype=dtype)))
                torch.manual_seed(seed)
                out[f"uniform_/{key}"] = digest(torch.empty(size, dtype=dtype).uniform_(-0.37, 0.41))
                torch.manual_seed(seed)
                out[f"randn_scalar_path/{key}"] = digest(torch.randn(min(size, 15), dtype=dtype))
                torch.manual_seed(seed)
                out[f"exponential_/{key}"] = digest(torch.empty(size, dtype=dtype).exponential_(1.5))
                torch.manual_seed(seed)
                out[f"bernoulli_/{key}"] = digest(torch.empty(size, dtype=dtype).bernoulli_(0.3))
                torch.manual_seed(seed)
                out[f"bernoulli_tensor/{key}"] = digest(torch.bernoulli(torch.from_numpy((np.arange(size) % 64 / 64).astype(str(dtype).split(".")[-1]))))
                torch.manual_seed(seed)
                out[f"dropout/{key}"] = digest(F.dropout(torch.arange(size, dtype=dtype) * 0.25 - 2.0, p=0.1, training=True))
                if name == "float64":
                    torch.manual_seed(seed)
                    out[f"randn/{key}"] = digest(torch.randn(size, dtype=dtype))
            key = f"{seed}/{size}"
            torch.manual_seed(seed)
            out[f"randint/{key}"] = digest(torch.randint(-5, 17, (size,)))
            torch.manual_seed(seed)
            out[f"randint_wide/{key}"] = digest(torch.randint(0, 2**30, (size,)))
            torch.manual_seed(seed)
            out[f"random_/{key}"] = digest(torch.empty(size, dtype=torch.int64).random_())
            torch.manual_seed(seed)
            out[f"randperm/{key}"] = digest(torch.randperm(size))
            weights = (torch.sin(torch.arange(weights_rows * size, dtype=torch.float32) + seed % 7).abs() + 0.01).reshape(weights_rows, size)
            torch.manual_seed(seed)
            out[f"multinomial_1/{key}"] = digest(torch.multinomial(weights, 1))
            torch.manual_seed(seed)
            out[f"multinomial_1d/{key}"] = digest(torch.multinomial(weights[0], 1))
            torch.manual_seed(seed)
            out[f"multinomial_no_replacement/{key}"] = digest(torch.multinomial(weights, min(size, 5)))
            torch.manual_seed(seed)
            out[f"multinomial_replacement/{key}"] = digest(torch.multinomial(weights, 7, replacement=True))
            torch.manual_seed(seed)
            out[f"multinomial_replacement_1d/{key}"] = digest(torch.multinomial(weights[0].double(), 7, replacement=True))
        torch.manual_seed(seed)
        torch.rand(5)
        torch.randn(3)  # leaves a cached normal in the generator
        out[f"get_rng_state/{seed}"] = digest(torch.get_rng_state())
    return out


def normal_values() -> dict:
    """float32 randn and normal_(0.5, 2.0) of 16+ elements (PyTorch's vectorised Box-Muller), whole."""
    out = {}
    for seed in SEEDS:
        for size in [size for size in SIZES if size >= 16]:
            torch.manual_seed(seed)
            out[f"randn/{seed}/{size}"] = torch.randn(size).numpy()
            out[f"normal_/{seed}/{size}"] = torch.empty(size).normal_(0.5, 2.0).numpy()
    return out


def loaders() -> dict:
    """DataLoader(shuffle=True) epochs, random_split, and the draws right after each (stream position)."""
    out = {}
    for seed in SEEDS:
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(list(range(23)), batch_size=4, shuffle=True, drop_last=True)
        epochs = [[batch.tolist() for batch in loader] for _ in range(3)]
        out[f"dataloader_shuffle/{seed}"] = {"epochs": epochs, "after": torch.randint(0, 2**30, (4,)).tolist()}
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(list(range(11)), batch_size=3, shuffle=False)
        plain = [[batch.tolist() for batch in loader] for _ in range(2)]
        out[f"dataloader_plain/{seed}"] = {"epochs": plain, "after": torch.randint(0, 2**30, (4,)).tolist()}
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(list(range(10)), batch_size=3, shuffle=True, generator=generator)
        out[f"dataloader_generator/{seed}"] = {"epochs": [[batch.tolist() for batch in loader] for _ in range(2)],
                                               "after": torch.randint(0, 2**30, (4,), generator=generator).tolist()}
        splits = torch.utils.data.random_split(range(30), [0.3, 0.3, 0.4], generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        default_splits = torch.utils.data.random_split(range(10), [3, 7])
        out[f"random_split/{seed}"] = {"fractions": [list(split) for split in splits], "default": [list(split) for split in default_splits]}
    torch.manual_seed(123)
    out["book_dropout_6x6"] = torch.nn.Dropout(0.5)(torch.ones(6, 6)).tolist()
    return out


def book_model(book: Path) -> dict:
    """The book's ch04 GPTModel (small config) after manual_seed(123): weights, a dropout forward, generate."""
    sys.path.insert(0, str(book / "pkg"))
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.ticker", "requests"):  # ch05.py imports them (plots, downloads)
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["matplotlib.ticker"].MaxNLocator = None
    from llms_from_scratch.ch04 import GPTModel
    from llms_from_scratch.ch05 import generate

    torch.manual_seed(123)
    model = GPTModel(SMALL_CONFIG)
    arrays = {f"weight/{name}": value.detach().numpy().copy() for name, value in model.state_dict().items() if not name.endswith("mask")}
    torch.manual_seed(7)
    model.train()
    arrays["train_forward"] = model(torch.tensor([[1, 2, 3, 4, 5, 6]])).detach().numpy()
    model.eval()
    torch.manual_seed(123)
    arrays["generate_top_k"] = generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=10, context_size=16, top_k=25, temperature=1.4).numpy()
    return arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "torch_random",
                        help="output directory")
    parser.add_argument("--book", type=Path, default=Path("/work/book"), help="the book's repository (rasbt/LLMs-from-scratch)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "seeds": SEEDS, "sizes": SIZES,
            "small_config": SMALL_CONFIG}
    (args.out / "exact.json").write_text(json.dumps({"info": info, "draws": exact_draws()}, separators=(",", ":"), sort_keys=True))
    (args.out / "loaders.json").write_text(json.dumps(loaders(), indent=0, sort_keys=True))
    np.savez_compressed(args.out / "normal_float32.npz", **normal_values())
    np.savez_compressed(args.out / "book_model.npz", **book_model(args.book))
    print(f"wrote {args.out}: " + ", ".join(f"{path.name} {path.stat().st_size // 1024} KB" for path in sorted(args.out.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
