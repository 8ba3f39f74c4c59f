"""Tests of minigpt.finetune.preference (DPO): log-probabilities against a gather of log_softmax,
the loss against its formula, ln 2 when the policy is the reference, a stable log-sigmoid, float64
gradient checks of the whole loss through a tiny GPT, the collate masks, and a short training run
that widens the reward margin while the reference stays untouched. Book values (the bundled data,
the notebook's batch and masks) are in tests/book/test_dpo.py.
"""

import copy
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor
from autograd import functional as F
from autograd.functional import logsigmoid
from autograd.testing import arrays
from minigpt.finetune.preference import (
    compute_dpo_loss,
    compute_dpo_loss_batch,
    compute_dpo_loss_loader,
    compute_logprobs,
    custom_collate_fn,
    evaluate_dpo_loss_loader,
    train_model_dpo_simple,
)
from minigpt.model import GPTModel
from minigpt.optim import AdamW

TINY = dict(vocab_size=29, context_length=12, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=True)


def tiny_batch(seed=0, batch_size=3, pad=0):
    """A collated batch of random token sequences with prompts of 2-4 tokens and responses of 2-4."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(batch_size):
        prompt = rng.integers(1, 29, rng.integers(2, 5)).tolist()
        chosen = prompt + rng.integers(1, 29, 2 + rng.integers(2, 5)).tolist()
        rejected = prompt + rng.integers(1, 29, 2 + rng.integers(2, 5)).tolist()
        items.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return custom_collate_fn(items, pad_token_id=pad)


def gathered_logprobs(logits, labels, mask=None):
    """The notebook's compute_logprobs in NumPy: gather log_softmax at the next tokens."""
    shifted = logits[:, :-1, :]
    log_probs = shifted - shifted.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    selected = np.take_along_axis(log_probs, labels[:, 1:, None], axis=-1)[..., 0]
    if mask is None:
        return selected.mean(-1)
    mask = mask[:, 1:]
    return (selected * mask).sum(-1) / mask.sum(-1)


# ---- compute_logprobs ----------------------------------------------------------------------------


@settings(max_examples=30)
@given(st.integers(1, 3), st.integers(2, 6), st.integers(2, 7), st.data())
def test_compute_logprobs_equals_a_gather_of_log_softmax(batch, tokens, vocab, data):
    logits = data.draw(arrays((batch, tokens, vocab)))
    labels = np.asarray(data.draw(st.lists(st.integers(0, vocab - 1), min_size=batch * tokens, max_size=batch * tokens))).reshape(batch, tokens)
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=batch * tokens, max_size=batch * tokens))).reshape(batch, tokens)
    mask[:, -1] = True  # every row selects at least one position after the first
    x = Tensor(logits, requires_grad=True)
    np.testing.assert_allclose(compute_logprobs(x, labels).data, gathered_logprobs(logits, labels), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(compute_logprobs(x, labels, mask).data, gathered_logprobs(logits, labels, mask), rtol=1e-12, atol=1e-12)
    assert autograd.gradcheck(lambda x: compute_logprobs(x, labels, mask), [x], atol=1e-8, rtol=1e-6)


def test_compute_logprobs_errors():
    logits = Tensor(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="need labels"):
        compute_logprobs(logits, np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        compute_logprobs(Tensor(np.zeros((2, 1, 5), np.float32)), np.zeros((2, 1), np.int64))
    with pytest.raises(ValueError, match="row 1 selects no token"):
        compute_logprobs(logits, np.zeros((2, 3), np.int64), np.array([[0, 1, 1], [1, 0, 0]], bool))
    with pytest.raises(ValueError, match="selection_mask must have"):
        compute_logprobs(logits, np.zeros((2, 3), np.int64), np.ones((2, 2), bool))


# ---- log-sigmoid and the loss --------------------------------------------------------------------


def test_logsigmoid_is_stable_for_large_margins():
    for dtype in (np.float32, np.float64):
        values = np.array([-1e30, -1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4, 1e30], dtype=dtype)
        x = Tensor(values, requires_grad=True)
        out = logsigmoid(x)
        out.backward(np.ones_like(values))
        assert out.dtype == dtype and np.all(np.isfinite(out.data)) and np.all(np.isfinite(x.grad))
        expected = -np.logaddexp(0.0, -values.astype(np.float64))  # log sigmoid(x) = -log(1 + e^-x)
        np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(x.grad, 1 / (1 + np.exp(np.clip(values.astype(np.float64), -700, 700))), rtol=1e-6, atol=1e-30)
    assert logsigmoid(Tensor(np.array(0.0))).item() == -math.log(2)


@given(arrays((5,), low=-30, high=30))
def test_gradcheck_of_logsigmoid(values):
    assert autograd.gradcheck(logsigmoid, [Tensor(values, requires_grad=True)], atol=1e-8, rtol=1e-6)


def test_compute_dpo_loss_matches_its_formula_and_detaches_the_rewards():
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.standard_normal(4) * 3 for _ in range(4))
    policy_chosen, policy_rejected = Tensor(pc, requires_grad=True), Tensor(pr, requires_grad=True)
    loss, chosen_rewards, rejected_rewards = compute_dpo_loss(policy_chosen, policy_rejected, Tensor(rc), Tensor(rr), beta=0.3)
    margin = (pc - pr) - (rc - rr)
    assert loss.item() == pytest.approx(np.mean(np.logaddexp(0.0, -0.3 * margin)), rel=1e-12)
    assert chosen_rewards.item() == pytest.approx(np.mean(pc - rc)) and rejected_rewards.item() == pytest.approx(np.mean(pr - rr))
    assert loss.requires_grad and not chosen_rewards.requires_grad and not rejected_rewards.requires_grad
    # A huge margin either way: finite loss and gradient, no overflow in exp.
    for sign in (1.0, -1.0):
        x = Tensor(np.array([sign * 1e6]), requires_grad=True)
        loss, _, _ = compute_dpo_loss(x, Tensor(np.zeros(1)), np.zeros(1), np.zeros(1), beta=0.1)
        loss.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("beta", [0, -0.1, float("inf"), "0.1", True])
def test_compute_dpo_loss_rejects_a_bad_beta(beta):
    with pytest.raises(ValueError, match="beta must be a positive finite number"):
        compute_dpo_loss(Tensor(np.zeros(2)), Tensor(np.zeros(2)), np.zeros(2), np.zeros(2), beta=beta)


def test_compute_dpo_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        compute_dpo_loss(Tensor(np.zeros(2)), Tensor(np.zeros(3)), np.zeros(2), np.zeros(2))


def test_policy_equal_to_reference_gives_ln2_and_zero_rewards():
    policy = GPTModel(TINY, rng=0)
    reference = copy.deepcopy(policy)
    batch = tiny_batch()
    loss, chosen_rewards, rejected_rewards = compute_dpo_loss_batch(batch, policy, reference, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-7)
    assert chosen_rewards.item() == 0.0 and rejected_rewards.item() == 0.0
    loss.backward()
    assert all(p.grad is None for p in reference.parameters())  # the reference ran without a graph
    assert any(np.any(p.grad != 0) for p in policy.parameters())  # at 0 the slope is beta / 2, not 0


def test_gradcheck_of_the_whole_dpo_loss_through_a_tiny_gpt_in_float64():
    policy = GPTModel(TINY, rng=0).to(np.float64)
    reference = GPTModel(TINY, rng=1).to(np.float64)  # a different model: non-zero margins
    rng = np.random.default_rng(2)
    for parameter in policy.parameters():  # larger than the 0.02 init, so the check is not trivial
        parameter.data[...] += rng.standard_normal(parameter.shape) * 0.3
    batch = tiny_batch(seed=3)
    params = list(policy.parameters())
    assert autograd.gradcheck(
        lambda *p: compute_dpo_loss_batch(batch, policy, reference, beta=0.5)[0], params, max_elements=5, atol=1e-8, rtol=1e-5
    )


# ---- collate -------------------------------------------------------------------------------------


def test_collate_pads_to_one_length_and_masks_prompt_and_padding():
    items = [
        {"prompt": [1, 2, 3], "chosen": [1, 2, 3, 9, 9, 4, 5], "rejected": [1, 2, 3, 9, 9, 6]},
        {"prompt": [7], "chosen": [7, 9, 9, 8], "rejected": [7, 9, 9, 8, 8, 8, 8, 8]},
    ]
    batch = custom_collate_fn(items, pad_token_id=0)
    assert batch["chosen"].shape == batch["rejected"].shape == (2, 9)  # longest (8) + 1
    assert batch["chosen"].dtype == np.int64 and batch["chosen_mask"].dtype == bool
    np.testing.assert_array_equal(batch["chosen"][0], [1, 2, 3, 9, 9, 4, 5, 0, 0])
    np.testing.assert_array_equal(batch["chosen_mask"][0], [0, 0, 0, 0, 0, 1, 1, 0, 0])  # prompt + 2 newlines off
    np.testing.assert_array_equal(batch["rejected_mask"][1], [0, 0, 0, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(batch["prompt"][1], [7])
    unmasked = custom_collate_fn(items, pad_token_id=0, mask_prompt_tokens=False)
    np.testing.assert_array_equal(unmasked["chosen_mask"][0], [1, 1, 1, 1, 1, 1, 1, 0, 0])
    cut = custom_collate_fn(items, pad_token_id=0, allowed_max_length=5)
    assert cut["chosen"].shape == cut["rejected_mask"].shape == (2, 5)


def test_collate_errors():
    with pytest.raises(ValueError, match="batch is empty"):
        custom_collate_fn([])
    with pytest.raises(ValueError, match="device must be 'cpu'"):
        custom_collate_fn([{"prompt": [1], "chosen": [1, 2], "rejected": [1, 3]}], device="cuda")


# ---- loaders and training ------------------------------------------------------------------------


def test_loader_averages_and_empty_loader_is_nan():
    policy, reference = GPTModel(TINY, rng=0), GPTModel(TINY, rng=1)
    batches = [tiny_batch(seed) for seed in range(3)]
    per_batch = [tuple(value.item() for value in compute_dpo_loss_batch(b, policy, reference, 0.1)) for b in batches[:2]]
    averaged = compute_dpo_loss_loader(batches, policy, reference, beta=0.1, num_batches=2)
    np.testing.assert_allclose(averaged, np.mean(per_batch, axis=0), rtol=1e-6)
    assert all(math.isnan(value) for value in compute_dpo_loss_loader([], policy, reference, beta=0.1))
    with pytest.raises(ValueError, match="num_batches must be >= 1"):
        compute_dpo_loss_loader(batches, policy, reference, beta=0.1, num_batches=0)
    result = evaluate_dpo_loss_loader(policy, reference, batches, batches[:1], beta=0.1, eval_iter=5)
    assert set(result) == {"train_loss", "train_chosen_reward", "train_rejected_reward", "val_loss", "val_chosen_reward", "val_rejected_reward"}
    assert policy.training  # put back in training mode


def test_dpo_training_widens_the_margin_and_leaves_the_reference_alone(capsys):
    policy = GPTModel(TINY, rng=0)
    reference = copy.deepcopy(policy)
    reference_weights = {name: value.copy() for name, value in reference.state_dict().items()}
    batches = [tiny_batch(seed) for seed in range(2)]
    optimizer = AdamW(policy.parameters(), lr=1e-2, weight_decay=0.01)
    tracking = train_model_dpo_simple(policy, reference, batches, batches, optimizer, num_epochs=5, beta=0.1,
                                      eval_freq=2, eval_iter=2, start_context=None, tokenizer=None)
    assert len(tracking["val_losses"]) == 5 and tracking["tokens_seen"][0] == batches[0]["chosen"].size
    margins = [c - r for c, r in zip(tracking["train_chosen_rewards"], tracking["train_rejected_rewards"])]
    assert abs(margins[0]) < margins[-1] and margins[-1] > 0.5
    assert tracking["train_losses"][-1] < math.log(2) - 0.01
    assert all(not p.requires_grad and p.grad is None for p in reference.parameters())
    for name, value in reference.state_dict().items():
        np.testing.assert_array_equal(value, reference_weights[name])
    first_line = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"Ep 1 \(Step 000000\): Train loss 0\.\d{3}, Val loss 0\.\d{3}, "
                        r"Train reward margins -?\d\.\d{3}, Val reward margins -?\d\.\d{3}", first_line)
