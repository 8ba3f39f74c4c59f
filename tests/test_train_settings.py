"""Trainer and optimizer share one source of truth for lr, weight_decay and betas, and a NaN
loss is explained by its cause (issue 10)."""

import numpy as np
import pytest

from minigpt.data import DataLoader, GPTDataset
from minigpt.model import GPTModel
from minigpt.optim import AdamW
from minigpt.trainer import Trainer, TrainingConfig, weight_decay_groups

CFG = dict(vocab_size=20, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)


def parts(seed=0):
    """A tiny model and its training loader."""
    ids = np.random.default_rng(seed).integers(0, 20, 200)
    loader = DataLoader(GPTDataset(ids, None, 8, 8), batch_size=2, shuffle=True, drop_last=True, seed=0)
    return GPTModel(CFG, rng=seed), loader


def test_unset_config_takes_the_optimizers_lr_decay_and_betas():
    """The book's way: settings on AdamW only. The schedule's peak is the optimizer's lr."""
    model, loader = parts()
    optimizer = AdamW(model.parameters(), lr=2e-3, weight_decay=0.05, betas=(0.8, 0.95))
    config = TrainingConfig(max_steps=4)
    trainer = Trainer(model, optimizer, loader, None, config)
    assert (trainer.config.lr, trainer.config.weight_decay, trainer.config.betas) == (2e-3, 0.05, (0.8, 0.95))
    assert config.lr is None  # the caller's config is not changed
    trainer.train_step()
    assert [group["lr"] for group in optimizer.param_groups] == [2e-3]  # not a default of the trainer's
    assert optimizer.param_groups[0]["weight_decay"] == 0.05 and optimizer.param_groups[0]["betas"] == (0.8, 0.95)
    cosine = Trainer(model, AdamW(model.parameters(), lr=3e-3), loader, None,
                     TrainingConfig(max_steps=10, schedule="cosine", warmup_steps=2))
    assert cosine.learning_rate(2) == pytest.approx(3e-3)  # the peak, after the warmup
    assert cosine.learning_rate(0) == pytest.approx(3e-4)  # initial_lr None: peak / 10


def test_equal_settings_in_both_places_are_accepted_and_exempt_groups_do_not_count():
    model, loader = parts()
    optimizer = AdamW(weight_decay_groups(model, 0.1), lr=4e-4, betas=(0.9, 0.99))
    trainer = Trainer(model, optimizer, loader, None, TrainingConfig(max_steps=1, lr=4e-4, weight_decay=0.1, betas=[0.9, 0.99]))
    assert (trainer.config.lr, trainer.config.weight_decay) == (4e-4, 0.1)


@pytest.mark.parametrize("name, ours, theirs, shown", [
    ("lr", 4e-4, 1e-3, ["lr=0.0004", "lr is 0.001"]),
    ("weight_decay", 0.1, 0.01, ["weight_decay=0.1", "weight_decay is 0.01"]),
    ("betas", (0.9, 0.95), (0.9, 0.999), ["betas=(0.9, 0.95)", "betas is (0.9, 0.999)"]),
])
def test_different_settings_in_both_places_name_both_values(name, ours, theirs, shown):
    model, loader = parts()
    optimizer = AdamW(model.parameters(), **{name: theirs})
    with pytest.raises(ValueError) as error:
        Trainer(model, optimizer, loader, None, TrainingConfig(max_steps=1, **{name: ours}))
    for text in shown:
        assert text in str(error.value)


def test_groups_with_different_learning_rates_are_refused():
    model, loader = parts()
    groups = weight_decay_groups(model, 0.1)
    groups[1]["lr"] = 1e-4
    with pytest.raises(ValueError, match=r"different lr values \[0.0001, 0.001\]"):
        Trainer(model, AdamW(groups, lr=1e-3), loader, None, TrainingConfig(max_steps=1))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point of this test
def test_a_nan_loss_at_the_first_step_does_not_blame_the_learning_rate():
    """Non-finite logits from a fresh model: the learning rate is not the cause."""
    model, loader = parts()
    model.out_head.weight.data[...] = 3e38  # finite weights, but the logits overflow to inf
    trainer = Trainer(model, AdamW(model.parameters(), lr=1e-3), loader, None, TrainingConfig(max_steps=2))
    with pytest.raises(FloatingPointError, match="loss of step 1 is .*before any parameter update.*not the cause") as error:
        trainer.train_step()
    assert "lower the learning rate" not in str(error.value)


def test_a_nan_loss_names_its_cause():
    model, loader = parts()
    trainer = Trainer(model, AdamW(model.parameters(), lr=1e-3), loader, None, TrainingConfig(max_steps=3))
    trainer.train_step()
    batch = [(np.zeros((2, 8), dtype=np.int64), np.zeros((2, 8), dtype=np.int64))]
    assert "lower the learning rate (now 0.001)" in str(trainer._non_finite_loss_error(float("nan"), batch))
    float_inputs = [(np.array([[0.5, np.nan]]), np.zeros((1, 2), dtype=np.int64))]
    assert "inputs of the batch hold inf or NaN" in str(trainer._non_finite_loss_error(float("nan"), float_inputs))
    model.final_norm.scale.data[0] = np.inf
    assert "parameters hold inf or NaN" in str(trainer._non_finite_loss_error(float("nan"), batch))
