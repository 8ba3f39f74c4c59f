"""Write tests/fixtures/bfloat16/torch_bf16.safetensors: PyTorch's own float32 -> bfloat16 casts.

Run once, in a side venv with torch 2.13 and safetensors (never a dependency of minigpt):

    /tmp/torchref/bin/python scripts/make_bfloat16_fixture.py

The file holds float32 inputs chosen to hit every rounding case (exact values, halfway ties to
even and odd, just above and below a tie, subnormals, the largest finite values, overflow to
infinity, infinities, NaN, signed zero) plus random normals, and PyTorch's `.to(torch.bfloat16)`
of each, stored by `safetensors.torch.save_file` as BF16; and a small bfloat16 weight matrix as a
checkpoint would hold one. tests/test_bfloat16.py checks minigpt's reading, rounding and writing
against it.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def tricky_float32() -> np.ndarray:
    """float32 values at every kind of bfloat16 rounding boundary."""
    one_bits = np.float32(1.0).view(np.uint32)
    bits = [
        one_bits,              # exact
        one_bits + 0x8000,     # halfway between 1 and the next bfloat16 (1 + 2^-7): ties to even -> 1
        one_bits + 0x18000,    # halfway with an odd lower neighbour: rounds up
        one_bits + 0x7FFF,     # just below halfway: down
        one_bits + 0x8001,     # just above halfway: up
        0x00000001,            # smallest float32 subnormal
        0x00018000,            # subnormal halfway case
        0x7F7FFFFF,            # largest float32: overflows bfloat16's range -> inf
        0x7F7F0000,            # largest bfloat16
        0x7F7F7FFF,            # just below the overflow tie
        0x80000000,            # -0.0
        0x7F800000,            # inf
        0xFF800000,            # -inf
        0x7FC00000,            # quiet NaN
    ]
    values = np.array(bits, dtype=np.uint32).view(np.float32)
    return np.concatenate([values, -values[:5], np.array([3.14159265, 1e-3, 65504.0, 1e30], np.float32)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=Path(__file__).resolve().parents[1] / "tests/fixtures/bfloat16/torch_bf16.safetensors",
                        help="output file (default: the test fixture)")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.from_numpy(tricky_float32())
    random = torch.randn(257, generator=generator)  # float32
    tensors = {
        "tricky_f32": inputs,
        "tricky_bf16": inputs.to(torch.bfloat16),
        "random_f32": random,
        "random_bf16": random.to(torch.bfloat16),
        "random_f64_bf16": random.double().mul(1.0 + 2.0**-30).to(torch.bfloat16),
        "weight": torch.randn(4, 6, generator=generator).to(torch.bfloat16),
    }
    save_file(tensors, str(args.out), metadata={"format": "pt", "torch": torch.__version__})
    print(f"wrote {args.out} with torch {torch.__version__}")


if __name__ == "__main__":
    main()
