"""What issue 12 adds to minigpt.nn and minigpt.train for the book's code: buffers, `to(device)`,
PyTorch's default initialisation, ReLU/Sigmoid and the loss modules, `nn.functional`/`nn.utils`,
the default generator in layers, and the `device` argument of the chapter-5 functions."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor
from autograd import functional as F
from minigpt import nn
from minigpt.model import GPTModel
from minigpt.train import calc_loss_batch, calc_loss_loader, plot_losses


class WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2, rng=0)
        self.register_buffer("mask", autograd.triu(autograd.ones(3, 3), diagonal=1))
        self.register_buffer("scratch", np.zeros(2, dtype=np.float32), persistent=False)
        self.register_buffer("counts", np.arange(3))

    def forward(self, x):
        return self.linear(x)


def test_register_buffer_is_state_but_not_a_parameter():
    module = WithBuffer()
    assert [name for name, _ in module.named_parameters()] == ["linear.weight", "linear.bias"]
    assert list(module.state_dict()) == ["linear.weight", "linear.bias", "mask", "counts"]  # not the non-persistent one
    assert [name for name, _ in module.named_buffers()] == ["mask", "scratch", "counts"]
    assert isinstance(module.mask, Tensor) and not module.mask.requires_grad
    np.testing.assert_array_equal(module.state_dict()["mask"], np.triu(np.ones((3, 3)), 1))

    other = WithBuffer()
    other.mask = autograd.zeros(3, 3)  # reassigning replaces the buffer, as in torch
    assert not other.state_dict()["mask"].any()
    other.load_state_dict(module.state_dict())
    np.testing.assert_array_equal(other.mask.data, module.mask.data)
    with pytest.raises(KeyError, match="missing keys: mask"):
        other.load_state_dict({k: v for k, v in module.state_dict().items() if k != "mask"})


def test_to_converts_floating_buffers_and_refuses_other_devices():
    module = WithBuffer()
    assert module.to("cpu") is module and module.to(autograd.device("cpu")) is module
    module.to(np.float64)
    assert module.mask.dtype == np.float64 and module.linear.weight.dtype == np.float64
    assert module.counts.dtype == np.int64  # integer buffers keep their dtype, as in torch
    module.to("cpu", np.float32)
    assert module.mask.dtype == np.float32
    with pytest.raises(RuntimeError, match="CPU"):
        module.to("cuda")
    with pytest.raises(RuntimeError, match="CPU"):
        module.to(device="mps")
    with pytest.raises(TypeError, match="floating point"):
        module.to(np.int32)


def test_register_buffer_errors():
    module = WithBuffer()
    with pytest.raises(KeyError, match="already exists"):
        module.register_buffer("linear", np.zeros(1))
    with pytest.raises(KeyError, match="without dots"):
        module.register_buffer("a.b", np.zeros(1))
    with pytest.raises(TypeError, match="must be a Tensor"):
        module.register_buffer("values", [1, 2])
    module.register_buffer("empty", None)
    assert "empty" not in module.state_dict()


def test_linear_and_embedding_initialise_as_pytorch_by_default():
    autograd.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for values in (layer.weight.data, layer.bias.data):
        assert values.dtype == np.float32 and np.abs(values).max() <= bound
    assert layer.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # U(-b, b)
    table = nn.Embedding(1000, 64)
    assert table.weight.data.std() == pytest.approx(1.0, rel=0.02)
    # One manual_seed makes the draws reproducible; an explicit rng ignores the default generator.
    autograd.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.data, layer.weight.data)
    np.testing.assert_array_equal(nn.Linear(4, 3, rng=5).weight.data, nn.Linear(4, 3, rng=5).weight.data)
    with pytest.raises(ValueError, match="init must be one of"):
        nn.Linear(2, 2, init="xavier")


def test_gpt_model_initialisations_and_the_default_generator():
    cfg = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False}
    assert GPTModel(cfg, rng=1).tok_emb.weight.data.std() == pytest.approx(1.0, rel=0.2)  # PyTorch's N(0, 1): the default
    model = GPTModel(cfg, rng=1, init="gpt2")
    assert model.tok_emb.weight.data.std() == pytest.approx(0.02, rel=0.1)
    assert model.trf_blocks[0].att.W_query.weight.data.std() == pytest.approx(0.02, rel=0.1)
    autograd.manual_seed(7)
    first = GPTModel(cfg).state_dict()
    autograd.manual_seed(7)
    second = GPTModel(cfg).state_dict()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_dropout_without_a_generator_follows_manual_seed():
    dropout = nn.Dropout(0.5)
    x = autograd.ones(8, 8)
    autograd.manual_seed(3)
    first = dropout(x).data
    autograd.manual_seed(3)
    np.testing.assert_array_equal(dropout(x).data, first)
    assert dropout.rng is autograd.default_generator


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 10_000))
def test_relu_and_sigmoid_modules_match_their_functions_and_gradcheck(rows, cols, seed):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((rows, cols))
    values[np.abs(values) < 1e-3] = 0.5  # away from ReLU's kink
    x = Tensor(values, requires_grad=True)
    np.testing.assert_array_equal(nn.ReLU()(x).data, np.maximum(values, 0))
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp(-values)), rtol=1e-12)
    assert autograd.gradcheck(lambda t: nn.ReLU()(t), [x])
    assert autograd.gradcheck(lambda t: nn.Sigmoid()(t), [x])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.integers(0, 10_000), st.sampled_from(["mean", "sum"]))
def test_loss_modules_are_their_functions(n, classes, seed, reduction):
    rng = np.random.default_rng(seed)
    logits = Tensor(rng.standard_normal((n, classes)), requires_grad=True)
    targets = rng.integers(0, classes, n)
    expected = F.cross_entropy(logits, targets, reduction=reduction).item()
    assert nn.CrossEntropyLoss(reduction=reduction)(logits, targets).item() == expected
    prediction = Tensor(rng.standard_normal((n, classes)), requires_grad=True)
    target = rng.standard_normal((n, classes))
    assert nn.MSELoss(reduction=reduction)(prediction, target).item() == pytest.approx(
        np.sum((prediction.data - target) ** 2) / (n * classes if reduction == "mean" else 1), rel=1e-12
    )
    assert autograd.gradcheck(lambda p: nn.MSELoss(reduction=reduction)(p, target), [prediction])
    assert autograd.gradcheck(lambda z: nn.CrossEntropyLoss(reduction=reduction)(z, targets), [logits])


def test_loss_modules_validate_reduction_and_torch_namespaces():
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss(reduction="average")
    assert nn.functional.cross_entropy is F.cross_entropy
    assert nn.utils.clip_grad_norm_.__module__ == "minigpt.optim"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_chapter_5_functions_take_the_device_argument():
    cfg = {"vocab_size": 20, "context_length": 4, "emb_dim": 8, "n_heads": 2, "n_layers": 1, "drop_rate": 0.0, "qkv_bias": False}
    model = GPTModel(cfg, rng=0)
    inputs = np.array([[1, 2, 3, 4]])
    targets = np.array([[2, 3, 4, 5]])
    loss = calc_loss_batch(inputs, targets, model, "cpu").item()
    assert calc_loss_batch(inputs, targets, model, autograd.device("cpu")).item() == loss
    assert calc_loss_loader([(inputs, targets)], model, "cpu") == pytest.approx(loss)
    with pytest.raises(RuntimeError, match="CPU"):
        calc_loss_batch(inputs, targets, model, "cuda")
    with pytest.raises(RuntimeError, match="CPU"):
        calc_loss_loader([(inputs, targets)], model, "mps")


def test_plot_losses_takes_the_books_arguments(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    figure = plot_losses(autograd.linspace(0, 2, 3), [10, 20, 30], [3.0, 2.0, 1.0], [3.5, 3.0, 2.8], path=tmp_path / "loss.pdf")
    assert (tmp_path / "loss.pdf").exists() and figure.axes[0].get_xlabel() == "Epochs"
    with pytest.raises(ValueError, match="one length"):
        plot_losses([0, 1], [10, 20, 30], [3.0, 2.0, 1.0], [3.5, 3.0, 2.8])


def test_importing_minigpt_nn_gives_the_books_torch_nn_optim_and_utils_data():
    import minigpt.data
    import minigpt.optim

    assert autograd.nn is nn and autograd.nn.functional.cross_entropy is F.cross_entropy
    assert autograd.optim is minigpt.optim and autograd.utils.data is minigpt.data
    assert autograd.nn.utils.clip_grad_norm_ is minigpt.optim.clip_grad_norm_


def test_autograd_alone_imports_no_minigpt():
    import subprocess
    import sys

    code = "import sys, autograd; assert not any(m.startswith('minigpt') for m in sys.modules); assert not hasattr(autograd, 'nn')"
    subprocess.run([sys.executable, "-c", code], check=True)
