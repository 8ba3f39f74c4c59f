"""Tensors, shapes, gradients, parameters and modules print as PyTorch 2.13 prints them.

The expected texts were made once by PyTorch (scripts/make_printing_fixtures.py ->
tests/fixtures/printing/torch_printing.json): each case is a small array with the print options
in force and the text `repr(torch.tensor(array))` gave; the grad_fn names come from the same
expressions run on PyTorch.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import autograd as torch
import autograd.functional as F
from autograd.printing import format_tensor, get_printoptions, printoptions, set_printoptions
from autograd.size import Size
from minigpt import nn

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "printing" / "torch_printing.json").read_text())
CASES = FIXTURE["cases"]


@pytest.fixture(autouse=True)
def default_print_options():
    set_printoptions(profile="default")
    yield
    set_printoptions(profile="default")


def _array(case) -> np.ndarray:
    return np.array(case["values"], dtype=case["dtype"]).reshape(case["shape"])


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_tensor_repr_equals_pytorchs(case):
    set_printoptions(**case["options"])
    x = torch.tensor(_array(case))
    assert repr(x) == case["repr"]
    assert str(x) == case["repr"]
    if case["repr_requires_grad"] is not None:
        assert repr(x.requires_grad_(True)) == case["repr_requires_grad"]


# The expressions of the fixture, in minigpt's spelling where PyTorch's differs.
SPELLING = {
    "F.layer_norm(x3, (4,))": "F.layer_norm(x3)",
    "x.masked_fill(x > 0, -torch.inf)": "x.masked_fill((x > 0).data, -torch.inf)",
}


@pytest.mark.parametrize("expression", sorted(FIXTURE["grad_fn"]["names"]))
def test_grad_fn_names_equal_pytorchs(expression):
    arrays = FIXTURE["grad_fn"]["arrays"]
    env = {"torch": torch, "F": F}
    for name, values in arrays.items():
        array = np.array(values, dtype=np.int64 if name in ("idx", "tgt", "ids") else np.float32)
        env[name] = torch.tensor(array, requires_grad=array.dtype == np.float32 and name != "y")
    result = eval(SPELLING.get(expression, expression), env)  # noqa: S307 - the fixture's expressions
    expected = FIXTURE["grad_fn"]["names"][expression]
    assert result.grad_fn.torch_name == expected
    assert repr(result).endswith(f"grad_fn=<{expected}>)")


def test_grad_fn_name_survives_backward():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    assert repr(y) == "tensor(5., grad_fn=<SumBackward0>)"


def test_size_prints_as_torch_size_and_stays_a_tuple():
    for shape, text in FIXTURE["size"].items():
        assert repr(Size(eval(shape))) == text and str(Size(eval(shape))) == text  # noqa: S307
    x = torch.zeros(2, 6, 3)
    assert x.shape == (2, 6, 3) and x.size() == x.shape and isinstance(x.shape, tuple)
    assert repr(x.shape[1:]) == "torch.Size([6, 3])" and x.shape.numel() == 36 == x.numel()
    assert repr(x.shape + (1,)) == "torch.Size([2, 6, 3, 1])" and x.shape[0] == 2
    assert f"{x.shape}" == "(2, 6, 3)"  # minigpt's error messages keep the tuple spelling
    assert np.zeros(x.shape).shape == (2, 6, 3) and torch.Size([2, 3]) == (2, 3)
    with pytest.raises(TypeError, match="each dimension must be an int"):
        Size([2.5])


def test_gradient_and_parameter_print_as_pytorch():
    w1 = torch.tensor([2.2], requires_grad=True)
    (w1 * 3.0).sum().backward()
    assert repr(w1.grad) == "tensor([3.])" and str(w1.grad) == "tensor([3.])"
    parameter = nn.Parameter(np.array([[1.0, -2.5], [0.125, 4.0]], dtype=np.float32))
    assert repr(parameter) == FIXTURE["parameter"]


def test_set_printoptions_rules():
    set_printoptions(precision=2, sci_mode=True)
    assert get_printoptions()["precision"] == 2 and get_printoptions()["sci_mode"] is True
    set_printoptions(linewidth=60)  # as PyTorch: every call sets sci_mode, here back to None
    assert get_printoptions()["sci_mode"] is None and get_printoptions()["precision"] == 2
    with printoptions(precision=6):
        assert repr(torch.tensor([0.5])) == "tensor([0.500000])"
    assert repr(torch.tensor([0.5])) == "tensor([0.50])"
    with pytest.raises(ValueError, match="profile must be 'default', 'short' or 'full', got 'long'"):
        set_printoptions(profile="long")
    with pytest.raises(ValueError, match="precision must be a non-negative int, got -1"):
        set_printoptions(precision=-1)


def test_format_tensor_places_suffixes_like_pytorch():
    assert format_tensor(np.zeros(0, dtype=np.int64)) == "tensor([], dtype=torch.int64)"
    assert format_tensor(np.ones(2, dtype=np.float32), grad_fn_name="AddBackward0") == "tensor([1., 1.], grad_fn=<AddBackward0>)"
    assert format_tensor(np.ones(2, dtype=np.float32), requires_grad=True) == "tensor([1., 1.], requires_grad=True)"


def test_module_repr_is_pytorchs_layout():
    model = nn.Sequential(nn.Linear(50, 30), nn.ReLU(), nn.Linear(30, 3, bias=False))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=50, out_features=30, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Linear(in_features=30, out_features=3, bias=False)\n"
        ")"
    )
    assert repr(nn.Embedding(50257, 4)) == "Embedding(50257, 4)"
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1, inplace=False)"
    assert repr(nn.LayerNorm(768)) == "LayerNorm((768,), eps=1e-05, elementwise_affine=True, bias=True)"
    assert repr(nn.ModuleList([nn.ReLU(), nn.ReLU()])) == "ModuleList(\n  (0-1): 2 x ReLU()\n)"
