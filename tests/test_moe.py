"""MoEFeedForward (minigpt/nn/moe.py): the book's PyTorch MoE's outputs and every gradient
(tests/fixtures/moe/book_moe.npz, made by scripts/make_moe_fixture.py with torch 2.13 from the
book's ch04/07_moe and qwen3.py classes), float64 finite differences over hypothesis shapes, and a
plain NumPy per-token reference."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import autograd as torch
from autograd import Tensor, gradcheck
from minigpt.nn import MoEFeedForward

FIXTURE = Path(__file__).parent / "fixtures" / "moe" / "book_moe.npz"


def _cfg(emb_dim, hidden, experts, k, key="hidden_dim", dtype=np.float64):
    return {"emb_dim": emb_dim, key: hidden, "num_experts": experts, "num_experts_per_tok": k, "dtype": dtype}


@pytest.mark.parametrize("case", ["ch04", "qwen3", "top1"])
def test_matches_the_books_pytorch_moe(case):
    data = np.load(FIXTURE)
    emb_dim, hidden, experts, k = (int(v) for v in data[f"{case}/cfg"])
    key = "moe_intermediate_size" if case == "qwen3" else "hidden_dim"
    layer = MoEFeedForward(_cfg(emb_dim, hidden, experts, k, key), rng=0)
    prefix = f"{case}/param/"
    state = {name[len(prefix):]: data[name] for name in data.files if name.startswith(prefix)}
    assert set(state) == set(layer.state_dict())  # the book's state_dict names, one to one
    layer.load_state_dict(state)
    x = Tensor(data[f"{case}/x"], requires_grad=True)
    out = layer(x)
    np.testing.assert_allclose(out.data, data[f"{case}/out"], rtol=1e-12, atol=1e-13)
    out.backward(data[f"{case}/dout"])
    np.testing.assert_allclose(x.grad, data[f"{case}/grad/x"], rtol=1e-10, atol=1e-12)
    for name, parameter in layer.named_parameters():
        grad = np.zeros_like(parameter.data) if parameter.grad is None else parameter.grad
        np.testing.assert_allclose(grad, data[f"{case}/grad/{name}"], rtol=1e-10, atol=1e-12, err_msg=name)


def _numpy_reference(layer, x):
    """Per token: softmax over the top-k gate scores, weighted sum of those experts' SwiGLU outputs."""
    def silu(v):
        return v / (1.0 + np.exp(-v))
    weight = lambda module: module.weight.data  # noqa: E731
    out = np.zeros_like(x)
    for b, t in np.ndindex(x.shape[:2]):
        token = x[b, t]
        scores = weight(layer.gate) @ token
        chosen = np.argsort(-scores, kind="stable")[: layer.num_experts_per_tok]
        probs = np.exp(scores[chosen] - scores[chosen].max())
        probs /= probs.sum()
        for p, e in zip(probs, chosen):
            hidden = silu(weight(layer.fc1[e]) @ token) * (weight(layer.fc2[e]) @ token)
            out[b, t] += p * (weight(layer.fc3[e]) @ hidden)
    return out


def _top_gap(layer, x):
    """Smallest gap between the k-th and (k+1)-th gate score of any token (inf when k == E)."""
    scores = np.sort(x @ layer.gate.weight.data.T, axis=-1)[..., ::-1]
    k = layer.num_experts_per_tok
    return np.inf if k == layer.num_experts else float(np.min(scores[..., k - 1] - scores[..., k]))


@st.composite
def moe_cases(draw):
    experts = draw(st.integers(1, 5))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4)),
            experts, draw(st.integers(1, experts)), draw(st.integers(0, 2**31 - 1)))


@settings(max_examples=15, deadline=None)
@given(moe_cases())
def test_gradients_finite_differences(case):
    batch, tokens, emb_dim, hidden, experts, k, seed = case
    layer = MoEFeedForward(_cfg(emb_dim, hidden, experts, k), rng=seed)
    x = Tensor(np.random.default_rng(seed).standard_normal((batch, tokens, emb_dim)), requires_grad=True)
    # The top-k choice is a step function: keep away from ties, where a 1e-6 step could flip it.
    assume(_top_gap(layer, x.data) > 1e-3)
    np.testing.assert_allclose(layer(x).data, _numpy_reference(layer, x.data), rtol=1e-12, atol=1e-12)
    # The router and the experts, through x and every weight (experts not chosen get zero).
    assert gradcheck(lambda *inputs: layer(inputs[0]), [x, *layer.parameters()], seed=seed)


def test_unchosen_experts_get_no_gradient_and_tokens_are_independent():
    layer = MoEFeedForward(_cfg(4, 3, 6, 1), rng=1)
    x = Tensor(np.random.default_rng(2).standard_normal((1, 2, 4)), requires_grad=True)
    out = layer(x)
    out.backward(np.ones_like(out.data))
    chosen = set(np.argmax(x.data @ layer.gate.weight.data.T, axis=-1).ravel().tolist())
    for e in range(6):
        assert (layer.fc1[e].weight.grad is not None) == (e in chosen)
    # Changing token 1 leaves token 0's output unchanged.
    other = x.data.copy()
    other[0, 1] += 1.0
    np.testing.assert_array_equal(layer(Tensor(other)).data[0, 0], out.data[0, 0])


def test_float32_and_bfloat16_configs():
    layer = MoEFeedForward(_cfg(8, 4, 4, 2, key="moe_intermediate_size", dtype=None), rng=0)
    x = torch.randn(2, 3, 8)
    assert layer(x).dtype == np.float32
    bf16 = MoEFeedForward(_cfg(8, 4, 4, 2, dtype=torch.bfloat16), rng=0)
    weight = bf16.fc3[0].weight.data
    assert weight.dtype == np.float32 and not np.any(weight.view(np.uint32) & 0xFFFF)


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        MoEFeedForward(_cfg(4, 3, 2, 3))
    with pytest.raises(ValueError, match="num_experts"):
        MoEFeedForward({"emb_dim": 4, "hidden_dim": 3, "num_experts_per_tok": 1})
    layer = MoEFeedForward(_cfg(4, 3, 2, 1))
    with pytest.raises(ValueError, match=r"\(batch, tokens, 4\)"):
        layer(torch.randn(2, 5))
