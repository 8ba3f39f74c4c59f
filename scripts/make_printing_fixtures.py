"""Write tests/fixtures/printing/torch_printing.json: how PyTorch 2.13 prints tensors, shapes and grad_fn names.

    /tmp/torchref/bin/python scripts/make_printing_fixtures.py      # a Python with torch==2.13.0 (CPU)

Run once, with PyTorch, never by the test suite. Each case is a small array (stored as a list,
with its dtype), the print options in force and the text `repr(torch.tensor(array))` gave, so
tests/test_printing.py rebuilds the same values on minigpt and compares the text. The cases cover
what torch/_tensor_str.py decides: fixed vs scientific notation (ratio > 1000, > 1e8, < 1e-4),
"int mode" floats (`1.`), inf/nan, negative zero, integers and bools, the default dtypes left out
and the others shown, 0-d, empty and 1-element tensors, wrapping at the line width, nesting to 4-D,
summaries past the threshold, every set_printoptions option and profile, requires_grad, and the
grad_fn names of the ops (each an expression run on both libraries). NumPy draws the values
(seeded), so the arrays are exact in the json.

References: torch/_tensor_str.py, torch.set_printoptions, torch.Size (PyTorch 2.13).
"""

import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "printing" / "torch_printing.json"
DEFAULT = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "sci_mode": None}


def _cases():
    rng = np.random.default_rng(22)
    f32 = lambda *shape, scale=1.0: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    yield "book-like 6x6", f32(6, 6), {}
    yield "scalar", np.array(1.374, dtype=np.float32), {}
    yield "scalar zero", np.array(0.0, dtype=np.float32), {}
    yield "scalar int", np.array(7, dtype=np.int64), {}
    yield "one element", np.array([-0.0898], dtype=np.float32), {}
    yield "int mode", np.array([[1.0, 0.0], [2.0, -3.0]], dtype=np.float32), {}
    yield "int mode with inf nan", np.array([1.0, np.inf, -np.inf, np.nan], dtype=np.float32), {}
    yield "fixed with inf nan", np.array([0.5, np.nan, -np.inf, 0.25], dtype=np.float32), {}
    yield "negative zero", np.array([-0.0, 0.5, -0.25], dtype=np.float32), {}
    yield "sci small", np.array([1e-5, 1.0, 0.5], dtype=np.float32), {}
    yield "sci ratio", np.array([0.001, 2.0, 5.0], dtype=np.float32), {}
    yield "sci large", np.array([1e9, 1.0], dtype=np.float32), {}
    yield "sci large int mode", np.array([3e8, 2.0], dtype=np.float32), {}
    yield "all zeros", np.zeros((2, 3), dtype=np.float32), {}
    yield "float64", f32(3, 4).astype(np.float64), {}
    yield "float16", f32(5).astype(np.float16), {}
    yield "int64", rng.integers(-1000, 50000, size=(3, 7)), {}
    yield "int32", rng.integers(0, 9, size=(4,)).astype(np.int32), {}
    yield "uint8", rng.integers(0, 255, size=(2, 5)).astype(np.uint8), {}
    yield "int8", np.array([-3, 4], dtype=np.int8), {}
    yield "bool", rng.random((3, 4)) > 0.5, {}
    yield "empty 1-d", np.zeros(0, dtype=np.float32), {}
    yield "empty 1-d int64", np.zeros(0, dtype=np.int64), {}
    yield "empty 2-d", np.zeros((2, 0), dtype=np.float32), {}
    yield "empty float64 3-d", np.zeros((0, 2, 3), dtype=np.float64), {}
    yield "wrap long row", f32(30), {}
    yield "wrap long int row", np.arange(40, dtype=np.int64) * 1000, {}
    yield "3-d", f32(2, 3, 4), {}
    yield "4-d", f32(2, 2, 2, 3), {}
    yield "summary 1-d", f32(2000), {}
    yield "summary 2-d", f32(50, 40), {}
    yield "summary 3-d", f32(20, 30, 4), {}
    yield "summary int", np.arange(2000, dtype=np.int64).reshape(2, 1000), {}
    yield "summary edges decide sci", np.concatenate([np.full(3, 0.5), np.full(994, 1e-7), np.full(3, 0.25)]).astype(np.float32), {}
    yield "precision 2", f32(3, 3), {"precision": 2}
    yield "precision 8 float64", f32(4).astype(np.float64), {"precision": 8}
    yield "threshold 5", np.arange(10, dtype=np.int64), {"threshold": 5}
    yield "edgeitems 1", f32(8, 9), {"threshold": 10, "edgeitems": 1}
    yield "edgeitems 0", f32(8, 9), {"threshold": 10, "edgeitems": 0}
    yield "linewidth 40", f32(3, 12), {"linewidth": 40}
    yield "sci_mode False", np.array([1e-5, 1.0, 300.0], dtype=np.float32), {"sci_mode": False}
    yield "sci_mode True", np.array([0.5, 1.0], dtype=np.float32), {"sci_mode": True}
    yield "sci_mode True int mode", np.array([1.0, 2.0], dtype=np.float32), {"sci_mode": True}
    yield "profile short", f32(3, 3), {"profile": "short"}
    yield "profile full", f32(1100), {"profile": "full"}
    yield "suffix wraps", f32(6, 7).astype(np.float64), {}


GRAD_FN_EXPRESSIONS = [
    "x + x", "x - 1", "x * 2", "x / y", "-x", "x ** 2", "x @ w", "v @ v", "m @ v", "x3 @ w", "x3 @ x3.transpose(1, 2)",
    "x.sum()", "x.sum(dim=-1)", "x.sum(-1, keepdim=True)", "x.mean()", "x.mean(dim=-1, keepdim=True)",
    "x.var(dim=-1, keepdim=True, unbiased=False)", "x.max()", "x.max(dim=-1).values", "x.exp()", "x.abs().log()",
    "x.abs().sqrt()", "x.tanh()", "x.relu()", "torch.sigmoid(x)", "x.clamp(min=0)", "torch.softmax(x, dim=-1)",
    "F.log_softmax(x, dim=-1)", "x.T", "x3.transpose(1, 2)", "x3.permute(2, 0, 1)", "x3.view(6, 4)", "x3.reshape(-1)",
    "x3.transpose(1, 2).reshape(2, 12)", "x3.flatten(0, 1)", "x.unsqueeze(0)", "x[None]", "x[0]", "x[:, 1]",
    "x[0:2]", "x[:, :2]", "x3[:, -1, :]", "x[[0, 2]]", "x[x > 0]", "x3[..., 0]", "torch.cat([x, x])",
    "torch.stack([x, x])", "x.masked_fill(x > 0, -torch.inf)", "torch.where(x > 0, x, 0.0)", "torch.maximum(x, y)",
    "x.clone()", "x.double()", "x.to(torch.float64)", "x3.expand(2, 3, 4) * 1", "x.gather(1, idx)",
    "F.linear(x, w.T)", "F.linear(x, w.T, b)", "F.linear(x3, w.T, b)", "F.linear(x3, w.T)",
    "F.cross_entropy(x, tgt)", "F.gelu(x)", "F.embedding(ids, x)", "F.dropout(x, 0.5, True)",
    "F.layer_norm(x3, (4,))", "F.mse_loss(x, y)", "F.binary_cross_entropy_with_logits(x, y.sigmoid())",
    "F.binary_cross_entropy(x.sigmoid(), y.sigmoid())", "torch.dot(v, v)", "x.topk(2).values",
]


def _grad_fn_cases():
    g = torch.Generator().manual_seed(0)
    env = {
        "torch": torch, "F": torch.nn.functional,
        "x": torch.randn(3, 4, generator=g, requires_grad=True), "y": torch.randn(3, 4, generator=g),
        "w": torch.randn(4, 5, generator=g, requires_grad=True), "b": torch.randn(5, generator=g, requires_grad=True),
        "v": torch.randn(4, generator=g, requires_grad=True), "m": torch.randn(3, 4, generator=g, requires_grad=True),
        "x3": torch.randn(2, 3, 4, generator=g, requires_grad=True), "idx": torch.tensor([[0, 1], [2, 3], [1, 1]]),
        "tgt": torch.tensor([0, 3, 1]), "ids": torch.tensor([0, 2, 1]),
    }
    arrays = {name: value.detach().numpy().tolist() for name, value in env.items() if isinstance(value, torch.Tensor)}
    names = {}
    for expression in GRAD_FN_EXPRESSIONS:
        result = eval(expression, env)  # noqa: S307 - the fixed expressions above
        names[expression] = type(result.grad_fn).__name__
    return arrays, names


def main() -> None:
    cases = []
    for name, array, options in _cases():
        torch.set_printoptions(profile="default", sci_mode=None)
        torch.set_printoptions(**options)
        t = torch.from_numpy(np.array(array, copy=True))
        text = repr(t)
        with_grad = repr(t.requires_grad_(True)) if t.dtype.is_floating_point and t.numel() else None
        cases.append({"name": name, "values": array.tolist(), "dtype": str(array.dtype), "shape": list(array.shape),
                      "options": options, "repr": text, "repr_requires_grad": with_grad})
    torch.set_printoptions(profile="default", sci_mode=None)
    arrays, grad_fn_names = _grad_fn_cases()
    sizes = {repr(shape): repr(torch.Size(shape)) for shape in [(), (3,), (2, 6, 3)]}
    parameter = repr(torch.nn.Parameter(torch.tensor([[1.0, -2.5], [0.125, 4.0]])))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"torch": torch.__version__, "cases": cases, "grad_fn": {"arrays": arrays, "names": grad_fn_names},
                               "size": sizes, "parameter": parameter}, indent=1))
    print(f"{OUT}: {len(cases)} tensors, {len(grad_fn_names)} grad_fn names ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
