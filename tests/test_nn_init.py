"""torch.nn.init (minigpt/nn/init.py): PyTorch's formulas on PyTorch's draws.

`nn.Linear`'s weight is checked bit for bit against PyTorch 2.13 in tests/test_torch_random.py; a
kaiming_uniform_(a=sqrt(5)) fill after the same seed must give that same weight, as in PyTorch,
where `Linear.reset_parameters` calls `kaiming_uniform_(self.weight, a=math.sqrt(5))`.
"""

import math

import numpy as np
import pytest

import autograd as torch
from minigpt import nn


@pytest.mark.parametrize("shape", [(4, 3), (7, 16), (1, 1)])
def test_kaiming_uniform_fills_as_linear_draws_its_weight(shape):
    torch.manual_seed(123)
    expected = nn.Linear(shape[1], shape[0], bias=False).weight.data.copy()
    torch.manual_seed(123)
    weight = nn.Parameter(torch.empty(*shape).data)
    returned = nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    assert returned is weight
    np.testing.assert_array_equal(weight.data, expected)


def test_the_books_lora_layer_types_as_the_book():
    # appendix E.4's LoRALayer.__init__, only the import changed
    torch.manual_seed(0)
    A = nn.Parameter(torch.empty(8, 2).data)
    nn.init.kaiming_uniform_(A, a=math.sqrt(5))
    bound = math.sqrt(3.0) * math.sqrt(2.0 / 6.0) / math.sqrt(2)  # fan_in 2
    assert np.abs(A.data).max() <= bound and np.abs(A.data).max() > bound / 2
    assert A.requires_grad


def test_fan_in_and_fan_out_and_gains():
    assert nn.init._calculate_fan_in_and_fan_out(torch.empty(5, 3, 2)) == (6, 10)
    assert nn.init.calculate_gain("relu") == math.sqrt(2.0)
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) == math.sqrt(1.0 / 3.0)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.kaiming_uniform_(torch.empty(3))
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_uniform_(torch.empty(3, 3), mode="fan")
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.init.calculate_gain("swish")
    with pytest.raises(TypeError, match="tensor must be a Tensor"):
        nn.init.uniform_(np.zeros(3))


def test_uniform_normal_ones_zeros_fill_in_place_with_the_default_generator():
    torch.manual_seed(7)
    expected = torch.rand(3, 4).data * 2 - 1
    torch.manual_seed(7)
    w = nn.Parameter(np.zeros((3, 4), dtype=np.float32))
    nn.init.uniform_(w, -1.0, 1.0)
    np.testing.assert_allclose(w.data, expected, rtol=0, atol=1e-6)
    torch.manual_seed(7)
    n = torch.randn(50).data
    torch.manual_seed(7)
    v = torch.empty(50)
    np.testing.assert_array_equal(nn.init.normal_(v).data, n)
    assert (nn.init.ones_(torch.empty(2, 2)).data == 1).all()
    assert (nn.init.zeros_(torch.ones(2)).data == 0).all()
