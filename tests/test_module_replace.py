"""Replacing a child module keeps its place (issue 10), as PyTorch's `Module.__setattr__`.

The book's appendix E wraps every Linear of a model with `setattr(module, name, LinearWithLoRA(...))`
while iterating over `named_children()`. The replaced child must keep its slot: a Sequential runs
its children in slot order, and state_dict lists keys in that order.
"""

import copy

import numpy as np
import pytest

from minigpt.model import GPT_CONFIG_124M
from minigpt.nn import FeedForward, Linear, Module, MultiHeadAttentionWrapper, Parameter, Sequential, TransformerBlock

CFG = {**GPT_CONFIG_124M, "emb_dim": 8, "n_heads": 2, "context_length": 4, "drop_rate": 0.0}
X = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)


class SameFunction(Module):
    """Wraps a module and computes exactly what it computes (a LoRA layer whose B is still zero)."""

    def __init__(self, inner: Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def replace_children_while_iterating(parent: Module, make_replacement) -> list[str]:
    """The appendix-E loop: replace every child while iterating over named_children()."""
    names = []
    for name, child in parent.named_children():
        setattr(parent, name, make_replacement(child))
        names.append(name)
    return names


def cases():
    """(parent whose children are replaced, the model that runs it)."""
    feed_forward = FeedForward(CFG, rng=1)  # its Sequential: Linear, GELU, Linear
    yield "Sequential", feed_forward.layers, feed_forward
    heads = MultiHeadAttentionWrapper(8, 4, 4, 0.0, num_heads=3, rng=2)  # outputs concatenated in list order
    yield "ModuleList", heads.heads, heads
    block = TransformerBlock(CFG, rng=3)  # a plain Module: att, ff, norm1, norm2, drop_shortcut
    yield "Module", block, block


@pytest.mark.parametrize("kind", ["Sequential", "ModuleList", "Module"])
@pytest.mark.parametrize("replacement", ["copy", "wrapper"])
def test_replacing_children_keeps_order_outputs_and_state_dict_keys(kind, replacement):
    _, parent, model = next(case for case in cases() if case[0] == kind)
    expected = model(X).data.copy()
    names_before = [name for name, _ in parent.named_children()]
    keys_before = list(model.state_dict())
    if replacement == "copy":
        replaced = replace_children_while_iterating(parent, copy.deepcopy)
        assert list(model.state_dict()) == keys_before  # same keys, same order
    else:
        replaced = replace_children_while_iterating(parent, SameFunction)
        # Each child's keys gain ".inner" but stay where they were.
        prefix = "" if parent is model else next(name for name, module in model.named_modules() if module is parent) + "."
        renamed = []
        for key in keys_before:
            child = key[len(prefix):].split(".")[0] if key.startswith(prefix) else None
            renamed.append(key.replace(f"{prefix}{child}.", f"{prefix}{child}.inner.", 1) if child in names_before else key)
        assert list(model.state_dict()) == renamed
    assert replaced == names_before
    assert [name for name, _ in parent.named_children()] == names_before
    np.testing.assert_array_equal(model(X).data, expected)  # bit-identical


def test_replacing_one_linear_of_a_sequential_keeps_the_order_of_calls():
    layers = Sequential(Linear(3, 5, rng=0), Linear(5, 2, rng=1))
    x = np.ones((1, 3), dtype=np.float32)
    expected = layers(x).data.copy()
    layers.__setattr__("0", SameFunction(layers[0]))  # before the fix, it moved after "1": (1, 3) @ (5, 2) failed
    np.testing.assert_array_equal(layers(x).data, expected)
    assert isinstance(layers[0], SameFunction)


def test_replacing_a_parameter_keeps_its_place_and_other_assignments_still_move():
    layer = Linear(3, 2, rng=0)
    layer.weight = Parameter(np.zeros((2, 3), dtype=np.float32))
    assert list(layer.state_dict()) == ["weight", "bias"]
    parent = Sequential(Linear(2, 2, rng=0), Linear(2, 2, rng=1))
    parent.__setattr__("0", None)  # a child replaced by a non-module is unregistered
    assert [name for name, _ in parent.named_children()] == ["1"]
    parent.__setattr__("0", Linear(2, 2, rng=2))  # then a new child, registered after the others
    assert [name for name, _ in parent.named_children()] == ["1", "0"]
