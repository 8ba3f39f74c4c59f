"""Losses of a model whose context length equals its vocabulary size (T == V).

`F.cross_entropy` reads 3-D logits as PyTorch does, classes in dimension 1, when their shape
allows both PyTorch's (B, C, T) and the book's (B, T, C) reading, which happens exactly when
T == V. Every loss inside minigpt must therefore flatten the model's (B, T, V) logits to
(B*T, V) rows first; these tests would see the wrong reading, since for random logits the two
readings give different losses.
"""

import numpy as np
import pytest

from minigpt.data import DataLoader, GPTDataset
from minigpt.finetune.preference import compute_logprobs
from minigpt.model import GPTModel
from minigpt.optim import AdamW

SIZE = 8  # the vocabulary size and the context length
CFG = dict(vocab_size=SIZE, context_length=SIZE, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)
TOKENS = np.random.default_rng(0).integers(0, SIZE, size=4 * SIZE + 1)


def log_probs_by_hand(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last dimension (the vocabulary), in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def mean_loss_by_hand(model, inputs, targets) -> float:
    """The mean over every (row, position) of -log p(target), the vocabulary being the last dimension."""
    log_probs = log_probs_by_hand(model(inputs).data)  # (B, T, V)
    rows, positions = np.indices(targets.shape)
    return float(-log_probs[rows, positions, targets].mean())


def test_the_two_readings_differ_here():
    """The check below can fail: reading dimension 1 as the classes gives another loss."""
    model = GPTModel(CFG, rng=0).eval()
    inputs, targets = TOKENS[None, :SIZE], TOKENS[None, 1:SIZE + 1]
    log_probs = log_probs_by_hand(model(inputs).data.transpose(0, 2, 1))  # classes in dimension 1, then last
    wrong = float(-log_probs[0, np.arange(SIZE), targets[0]].mean())
    assert abs(wrong - mean_loss_by_hand(model, inputs, targets)) > 1e-3


def test_dpo_log_probabilities_with_as_many_positions_as_tokens():
    model = GPTModel({**CFG, "context_length": SIZE + 1}, rng=0).eval()
    labels = TOKENS[: 2 * (SIZE + 1)].reshape(2, SIZE + 1)  # T - 1 == V positions are scored
    logits = model(labels)  # (2, T, V)
    log_probs = log_probs_by_hand(logits.data)[:, :-1]  # (2, T - 1, V)
    rows, positions = np.indices((2, SIZE))
    expected = log_probs[rows, positions, labels[:, 1:]].mean(-1)  # (2,)
    np.testing.assert_allclose(compute_logprobs(logits, labels).data, expected, rtol=1e-5)


def test_calc_loss_batch_and_loader():
    from minigpt.train import calc_loss_batch, calc_loss_loader

    model = GPTModel(CFG, rng=0).eval()
    loader = DataLoader(GPTDataset(TOKENS, None, SIZE, SIZE), batch_size=2)
    inputs, targets = next(iter(loader))
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    assert calc_loss_batch(inputs, targets, model).item() == pytest.approx(mean_loss_by_hand(model, inputs, targets), rel=1e-5)
    by_hand = np.mean([mean_loss_by_hand(model, np.asarray(x), np.asarray(y)) for x, y in loader])
    assert calc_loss_loader(loader, model) == pytest.approx(by_hand, rel=1e-5)


def test_trainer_step_loss():
    from minigpt.trainer import Trainer, TrainingConfig

    model = GPTModel(CFG, rng=0)
    loader = DataLoader(GPTDataset(TOKENS, None, SIZE, SIZE), batch_size=2, shuffle=False)
    inputs, targets = (np.asarray(part) for part in next(iter(loader)))
    expected = mean_loss_by_hand(model, inputs, targets)  # before the step's update
    trainer = Trainer(model, AdamW(model.parameters(), lr=1e-3), loader, None, TrainingConfig(max_steps=1), out_dir=None)
    assert trainer.train_step() == pytest.approx(expected, rel=1e-5)
