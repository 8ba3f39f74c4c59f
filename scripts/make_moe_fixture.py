"""Write tests/fixtures/moe/book_moe.npz: the book's PyTorch MoEFeedForward, outputs and gradients.

Runs the book's own classes, `ch04/07_moe/gpt_with_kv_moe.py` (expert size `hidden_dim`) and
`pkg/llms_from_scratch/qwen3.py` (`moe_intermediate_size`), in float64 on random inputs, and stores
for each: the weights (the book's state_dict names), the input x, a random upstream gradient
dout, the output, and the gradients of x and of every weight after `out.backward(dout)`.
tests/test_moe.py loads the weights into minigpt's MoEFeedForward and compares.

Run once, in a side venv with torch 2.13 (and tiktoken/requests, which the book's modules import):

    /tmp/ref-tok/bin/python scripts/make_moe_fixture.py --book /work/book
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "moe" / "book_moe.npz"

CASES = {
    # name: (module path, class config, input shape)
    "ch04": ("ch04", {"emb_dim": 8, "hidden_dim": 6, "num_experts": 5, "num_experts_per_tok": 2}, (2, 7, 8)),
    "qwen3": ("qwen3", {"emb_dim": 8, "moe_intermediate_size": 4, "num_experts": 6, "num_experts_per_tok": 3,
                        "dtype": torch.float64}, (3, 5, 8)),
    "top1": ("ch04", {"emb_dim": 4, "hidden_dim": 3, "num_experts": 3, "num_experts_per_tok": 1}, (1, 9, 4)),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", default="/work/book", help="the book's repository (rasbt/LLMs-from-scratch)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(args.book) / "ch04" / "07_moe"))
    sys.path.insert(0, str(Path(args.book) / "pkg"))
    from gpt_with_kv_moe import MoEFeedForward as Ch04MoE
    from llms_from_scratch.qwen3 import MoEFeedForward as Qwen3MoE

    torch.manual_seed(123)
    arrays = {}
    for name, (source, cfg, shape) in CASES.items():
        layer = (Ch04MoE if source == "ch04" else Qwen3MoE)(cfg).double()
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        dout = torch.randn(*shape, dtype=torch.float64)
        out = layer(x)
        out.backward(dout)
        arrays[f"{name}/x"], arrays[f"{name}/dout"] = x.detach().numpy(), dout.numpy()
        arrays[f"{name}/out"], arrays[f"{name}/grad/x"] = out.detach().numpy(), x.grad.numpy()
        for key, parameter in layer.named_parameters():
            arrays[f"{name}/param/{key}"] = parameter.detach().numpy()
            # An expert no token chose has no gradient in PyTorch (None): store zeros.
            grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
            arrays[f"{name}/grad/{key}"] = grad.numpy()
        arrays[f"{name}/cfg"] = np.array([cfg["emb_dim"], cfg.get("hidden_dim", cfg.get("moe_intermediate_size")),
                                          cfg["num_experts"], cfg["num_experts_per_tok"]])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes) with torch {torch.__version__}")


if __name__ == "__main__":
    main()
