"""Tests of minigpt.train (the book's chapter-5 functions) and minigpt.trainer (the Trainer, appendix D).

What is established here:
- the loss functions are the mean cross-entropy (and NaN for an empty loader);
- the book's `train_model_simple` learns (its losses fall);
- one Trainer step is AdamW's closed-form first step; gradient accumulation over micro-batches
  gives the whole batch's update, also when the micro-batches count different numbers of targets;
- resuming is exact, bit for bit (weights, optimizer state, history, data position, dropout
  generator): after `fit(stop_at=N)` + save + load into a new trainer, after Ctrl-C in a
  forward pass, in the data loader, in an evaluation, and inside `optimizer.step()`;
- checkpoint writes are atomic; evaluation and sampling do not change what training sees.

Models are tiny (vocabulary 32, 16 channels, 1 block, 8 tokens), so every test takes milliseconds
per step. Exactness checks that compare two different summation orders run in float64.
"""

import copy
import os

import numpy as np
import pytest

import autograd

import minigpt.checkpoint as checkpoint
import minigpt.trainer as trainer_module
from autograd import functional as F
from minigpt.char_tokenizer import CharTokenizer
from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from minigpt.data import DataLoader, GPTDataset
from minigpt.model import GPTModel
from minigpt.optim import AdamW, warmup_cosine_lr
from minigpt.train import calc_loss_batch, calc_loss_loader, evaluate_model, train_model_simple
from minigpt.trainer import Trainer, TrainingConfig, _draw_seed, _set_generator_state

VOCAB, CONTEXT = 32, 8
CFG = dict(vocab_size=VOCAB, context_length=CONTEXT, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.1, qkv_bias=False)
TRAIN_TOKENS = np.random.default_rng(0).integers(0, VOCAB, size=24 * CONTEXT + 1)  # 24 windows
VAL_TOKENS = np.random.default_rng(1).integers(0, VOCAB, size=4 * CONTEXT + 1)  # 4 windows
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEF"  # 32 characters: ids 0..31 decode to text


def make_trainer(out_dir=None, *, model_seed=1, dtype=None, batch_size=4, shuffle=True, drop_rate=0.1, train_dataset=None,
                 tokenizer=None, **settings):
    """A Trainer over the tiny model and data; `settings` are TrainingConfig fields."""
    model = GPTModel({**CFG, "drop_rate": drop_rate}, rng=model_seed)
    if dtype is not None:
        model.to(dtype)  # before the optimizer: AdamW keeps views of the parameters' arrays
    # The config's lr (and any weight_decay given) are the optimizer's too: one source of truth.
    optimizer = AdamW(model.parameters(), lr=settings.get("lr", 3e-3), weight_decay=settings.get("weight_decay", 0.1))
    dataset = train_dataset if train_dataset is not None else GPTDataset(TRAIN_TOKENS, None, CONTEXT, CONTEXT)
    train_loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=True, seed=5)
    val_loader = DataLoader(GPTDataset(VAL_TOKENS, None, CONTEXT, CONTEXT), batch_size=2)
    config = TrainingConfig(**{"lr": 3e-3, "eval_every": 1000, "eval_batches": 2, "sample_tokens": 0, **settings})
    return Trainer(model, optimizer, train_loader, val_loader, config, tokenizer=tokenizer, out_dir=out_dir)


def snapshot(trainer) -> dict:
    """Everything a resumed run must reproduce, copied."""
    optimizer_state = trainer.optimizer.state_dict()
    return {
        "weights": {name: array.copy() for name, array in trainer.model.state_dict().items()},
        "optimizer": {
            index: {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in state.items()}
            for index, state in optimizer_state["state"].items()
        },
        "param_groups": [{k: v for k, v in group.items() if k != "params"} for group in optimizer_state["param_groups"]],
        "history": copy.deepcopy(trainer.history),
        "step": trainer.step,
        "tokens_seen": trainer.tokens_seen,
        "loader": trainer.train_loader.state_dict(),
        "dropout_rng": trainer.model.dropout_rng.get_state().tobytes(),
    }


def assert_identical(a: dict, b: dict) -> None:
    """Bit-for-bit equality of two snapshots."""
    assert a["step"] == b["step"] and a["tokens_seen"] == b["tokens_seen"]
    assert a["history"] == b["history"]
    assert a["loader"] == b["loader"]
    assert a["dropout_rng"] == b["dropout_rng"]
    assert a["param_groups"] == b["param_groups"]
    for name in a["weights"]:
        assert np.array_equal(a["weights"][name], b["weights"][name]), name
    for index in a["optimizer"]:
        for key, value in a["optimizer"][index].items():
            assert np.array_equal(value, b["optimizer"][index][key]), (index, key)


def reference_run(**settings) -> dict:
    trainer = make_trainer(**settings)
    trainer.fit()
    return snapshot(trainer)


# ---- the book's functions -----------------------------------------------------------------------


def test_calc_loss_batch_is_the_mean_cross_entropy():
    model = GPTModel(CFG, rng=0).eval()
    inputs, targets = GPTDataset(TRAIN_TOKENS, None, CONTEXT, CONTEXT).get_batch([0, 1, 2])
    loss = calc_loss_batch(inputs, targets, model)
    logits = model(inputs).data.astype(np.float64)  # (B, T, V)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, targets[..., None], -1).mean()
    assert loss.data.dtype == np.float32 and loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_calc_loss_loader_averages_batches():
    model = GPTModel(CFG, rng=0).eval()
    loader = DataLoader(GPTDataset(TRAIN_TOKENS, None, CONTEXT, CONTEXT), batch_size=4)
    losses = [calc_loss_batch(x, y, model).item() for x, y in loader]
    assert calc_loss_loader(loader, model) == pytest.approx(np.mean(losses), rel=1e-6)
    assert calc_loss_loader(loader, model, num_batches=2) == pytest.approx(np.mean(losses[:2]), rel=1e-6)
    assert calc_loss_loader(loader, model, num_batches=100) == pytest.approx(np.mean(losses), rel=1e-6)
    with pytest.raises(ValueError, match="num_batches"):
        calc_loss_loader(loader, model, num_batches=0)


class EmptyDataset:
    def __len__(self):
        return 0


def test_calc_loss_loader_of_an_empty_loader_is_nan():
    model = GPTModel(CFG, rng=0)
    assert np.isnan(calc_loss_loader(DataLoader(EmptyDataset(), batch_size=2), model))
    assert np.isnan(calc_loss_loader([], model, num_batches=3))


def test_evaluate_model_returns_to_training_mode():
    model = GPTModel(CFG, rng=0)
    loader = DataLoader(GPTDataset(VAL_TOKENS, None, CONTEXT, CONTEXT), batch_size=2)
    model.train()
    train_loss, val_loss = evaluate_model(model, loader, loader, "cpu", eval_iter=1)
    assert model.training and train_loss == val_loss and np.isfinite(train_loss)
    # In eval mode dropout is off, so the estimate is deterministic.
    assert evaluate_model(model, loader, loader, "cpu", eval_iter=1) == (train_loss, val_loss)


def test_train_model_simple_learns(capsys):
    text = "every effort moves you forward. " * 12
    tokenizer = CharTokenizer.from_text(text)
    ids = np.asarray(tokenizer.encode(text))
    train_loader = DataLoader(GPTDataset(ids[:300], None, 8, 8), batch_size=4, shuffle=True, drop_last=True, seed=1)
    val_loader = DataLoader(GPTDataset(ids[300:], None, 8, 8), batch_size=4)
    model = GPTModel({**CFG, "vocab_size": tokenizer.n_vocab, "drop_rate": 0.0}, rng=3)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=4, eval_freq=3, eval_iter=len(train_loader),
        start_context="every", tokenizer=tokenizer,
    )
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == 12  # 9 batches x 4 epochs / 3
    assert all(later < earlier for earlier, later in zip(train_losses, train_losses[1:]))
    assert train_losses[-1] < 0.2 * train_losses[0] and val_losses[-1] < val_losses[0]  # it overfits, as in the book
    assert tokens_seen == [32 * (1 + 3 * i) for i in range(12)]
    output = capsys.readouterr().out
    assert "Ep 1 (Step 000000): Train loss" in output and "Ep 4 (Step 000033)" in output
    assert output.count("\nevery") + output.startswith("every") >= 4  # one sample per epoch


# ---- one step, accumulation -----------------------------------------------------------------------


def test_one_trainer_step_is_adamw_closed_form_first_step():
    lr, weight_decay, eps = 3e-3, 0.1, 1e-8
    trainer = make_trainer(dtype=np.float64, drop_rate=0.0, max_steps=1, lr=lr, weight_decay=weight_decay)
    before = {name: array.copy() for name, array in trainer.model.state_dict().items()}
    # The first batch the trainer will see, from an identical loader, and its gradient by hand.
    first_inputs, first_targets = next(iter(DataLoader(trainer.train_loader.dataset, batch_size=4, shuffle=True, drop_last=True, seed=5)))
    reference = GPTModel({**CFG, "drop_rate": 0.0}, rng=1).to(np.float64)
    calc_loss_batch(first_inputs, first_targets, reference).backward()
    grads = {name: parameter.grad for name, parameter in reference.named_parameters()}

    trainer.fit()

    # Step 1 of AdamW: m_hat = g and v_hat = g^2, so p <- p (1 - lr wd) - lr g / (|g| + eps).
    for name, parameter in trainer.model.named_parameters():
        g = grads[name]
        expected = before[name] * (1 - lr * weight_decay) - lr * g / (np.abs(g) + eps)
        np.testing.assert_allclose(parameter.data, expected, rtol=1e-10, atol=1e-13, err_msg=name)
    assert trainer.step == 1 and trainer.tokens_seen == 4 * CONTEXT
    assert all(group["lr"] == lr for group in trainer.optimizer.param_groups)
    assert trainer.history["step"] == [1]  # the last step of a run is always evaluated


@pytest.mark.parametrize("batch_size, accum", [(2, 2), (1, 4)])
def test_gradient_accumulation_equals_the_whole_batch(batch_size, accum):
    settings = dict(dtype=np.float64, drop_rate=0.0, shuffle=False, max_steps=3, grad_clip=0.5)
    whole = make_trainer(batch_size=4, grad_accum_steps=1, **settings)
    split = make_trainer(batch_size=batch_size, grad_accum_steps=accum, **settings)
    whole_losses = [whole.train_step() for _ in range(3)]
    split_losses = [split.train_step() for _ in range(3)]
    np.testing.assert_allclose(split_losses, whole_losses, rtol=1e-12)
    for name, parameter in whole.model.named_parameters():
        np.testing.assert_allclose(dict(split.model.named_parameters())[name].data, parameter.data, rtol=1e-9, atol=1e-12, err_msg=name)
    assert split.tokens_seen == whole.tokens_seen == 3 * 4 * CONTEXT


class IgnoredTargetsDataset:
    """Windows of TRAIN_TOKENS whose first `i % 7` targets are ignore_index (-100)."""

    def __init__(self):
        self.windows = GPTDataset(TRAIN_TOKENS, None, CONTEXT, CONTEXT)

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        inputs, targets = self.windows[i]
        targets[: i % 7] = -100
        return inputs, targets


def test_gradient_accumulation_weighs_micro_batches_by_their_target_counts():
    # Micro-batches of windows (0, 1) and (2, 3) count 15 and 11 targets: the step must be that of
    # the mean over all 26, not the mean of the two micro-batch means.
    settings = dict(dtype=np.float64, drop_rate=0.0, shuffle=False, max_steps=2, train_dataset=IgnoredTargetsDataset())
    whole = make_trainer(batch_size=4, grad_accum_steps=1, **settings)
    split = make_trainer(batch_size=2, grad_accum_steps=2, **settings)
    inputs, targets = next(iter(DataLoader(IgnoredTargetsDataset(), batch_size=4)))
    assert [int((row != -100).sum()) for row in targets] == [8, 7, 6, 5]
    loss = split.train_step()
    assert loss == pytest.approx(whole.train_step(), rel=1e-12)
    model = GPTModel({**CFG, "drop_rate": 0.0}, rng=1).to(np.float64)
    full_mean = F.cross_entropy(model(inputs), targets).item()
    mean_of_means = np.mean([F.cross_entropy(model(inputs[i:i + 2]), targets[i:i + 2]).item() for i in (0, 2)])
    assert loss == pytest.approx(full_mean, rel=1e-12) and abs(mean_of_means - full_mean) > 1e-4
    split.train_step(), whole.train_step()
    for (name, a), b in zip(whole.model.named_parameters(), split.model.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-9, atol=1e-12, err_msg=name)


# ---- exact resume ---------------------------------------------------------------------------------

RESUME_SETTINGS = {
    "constant": dict(max_steps=10, eval_every=2),
    "cosine+clip+accum": dict(max_steps=10, eval_every=2, schedule="cosine", warmup_steps=2, grad_clip=0.05, grad_accum_steps=2),
}


@pytest.mark.parametrize("name", list(RESUME_SETTINGS))
def test_resume_after_stop_at_is_exact(tmp_path, name):
    settings = RESUME_SETTINGS[name]
    reference = reference_run(**settings)
    first = make_trainer(str(tmp_path), **settings)
    first.fit(stop_at=5)  # not an evaluation step: the history must not get an extra entry
    assert first.step == 5 and first.history["step"] == [2, 4]
    second = make_trainer(str(tmp_path), model_seed=42, **settings)  # other weights and dropout seed
    second.load(os.path.join(tmp_path, CHECKPOINT_NAME))
    assert second.step == 5 and second.tokens_seen == first.tokens_seen
    second.fit()
    assert_identical(snapshot(second), reference)
    assert reference["history"]["step"] == [2, 4, 6, 8, 10]


def test_clipping_and_the_schedule_are_active_in_the_resume_test():
    # Guards the test above: without clipping, or with a constant rate, the run differs.
    settings = RESUME_SETTINGS["cosine+clip+accum"]
    reference = reference_run(**settings)["weights"]
    for change in (dict(grad_clip=None), dict(schedule="constant")):
        other = reference_run(**{**settings, **change})["weights"]
        assert any(not np.array_equal(reference[key], other[key]) for key in reference), change


# ---- dropout: one stream per micro-batch ----------------------------------------------------------


def record_embedding_dropout_masks(trainer, monkeypatch) -> list:
    """A list that receives, at each training forward, the kept-or-dropped mask of the model's
    embedding dropout (its output is 0 exactly where an element was dropped)."""
    from minigpt.nn.layers import Dropout

    masks, original = [], Dropout.forward

    def forward(self, x):
        out = original(self, x)
        if self is trainer.model.drop_emb and self.training:
            masks.append(out.data != 0)
        return out

    monkeypatch.setattr(Dropout, "forward", forward)
    return masks


def test_each_micro_batch_draws_its_own_dropout_stream_from_the_runs_seed(monkeypatch):
    settings = dict(max_steps=3, grad_accum_steps=2, drop_rate=0.5)
    trainer = make_trainer(**settings)
    masks = record_embedding_dropout_masks(trainer, monkeypatch)
    states = []
    original_forward = trainer.model.forward

    def forward(*args, **kwargs):
        if trainer.model.training:  # not the evaluations' forwards
            states.append(trainer.model.dropout_rng.get_state().tobytes())
        return original_forward(*args, **kwargs)

    trainer.model.forward = forward
    trainer.fit()
    assert len(masks) == 6 and all(0.3 < mask.mean() < 0.7 for mask in masks)  # p = 0.5: about half kept
    # Different micro-batches of a step and the same index in different steps: different masks.
    for a in range(6):
        for b in range(a + 1, 6):
            assert not np.array_equal(masks[a], masks[b]), (a, b)
    # Micro-batch i of step s starts from SeedSequence(dropout_seed, spawn_key=(s, i)), as documented.
    expected = [autograd.Generator().manual_seed(int(np.random.SeedSequence(trainer.dropout_seed, spawn_key=(s, i)).generate_state(1, np.uint64)[0]))
                .get_state().tobytes() for s in range(3) for i in range(2)]
    assert states == expected
    # Reproducible from the seed: the same model seed gives the same dropout seed and masks.
    again = make_trainer(**settings)
    assert again.dropout_seed == trainer.dropout_seed
    masks_again = record_embedding_dropout_masks(again, monkeypatch)
    again.fit()
    assert all(np.array_equal(a, b) for a, b in zip(masks, masks_again, strict=True))
    for (name, a), b in zip(trainer.model.named_parameters(), again.model.parameters()):
        assert np.array_equal(a.data, b.data), name
    # Another model seed: another dropout seed (so other masks).
    assert make_trainer(model_seed=2, **settings).dropout_seed != trainer.dropout_seed


def test_the_dropout_seed_is_in_the_checkpoint(tmp_path):
    trainer = make_trainer(str(tmp_path), max_steps=2)
    trainer.fit()
    state = load_checkpoint(os.path.join(tmp_path, CHECKPOINT_NAME))[2]["trainer"]
    assert state["dropout_seed"] == trainer.dropout_seed and isinstance(state["dropout_seed"], int)
    other = make_trainer(model_seed=42, max_steps=2)
    assert other.dropout_seed != trainer.dropout_seed
    other.load(os.path.join(tmp_path, CHECKPOINT_NAME))
    assert other.dropout_seed == trainer.dropout_seed


def test_a_checkpoint_from_before_dropout_seeds_resumes_reproducibly(tmp_path):
    # A checkpoint written before the dropout seed was saved: it has `dropout_rng_state` only.
    settings = dict(max_steps=6, eval_every=2, grad_accum_steps=2)
    first = make_trainer(str(tmp_path), **settings)
    first.fit(stop_at=3)
    path = os.path.join(tmp_path, CHECKPOINT_NAME)
    model_state, optimizer_state, metadata = load_checkpoint(path)
    del metadata["trainer"]["dropout_seed"]
    save_checkpoint(path, model_state, optimizer_state, metadata)
    # The seed is drawn from the restored generator, the same way every time.
    generator = autograd.Generator()
    _set_generator_state(generator, metadata["trainer"]["dropout_rng_state"])
    expected_seed = _draw_seed(generator)
    runs = []
    for model_seed in (7, 8):
        resumed = make_trainer(str(tmp_path / f"resumed{model_seed}"), model_seed=model_seed, **settings)
        resumed.load(path)
        assert resumed.dropout_seed == expected_seed != first.dropout_seed
        resumed.fit()
        runs.append(snapshot(resumed))
    assert_identical(*runs)
    # ... and that run's own checkpoint now holds the seed: it resumes exactly.
    resumed_path = os.path.join(tmp_path / "resumed7", CHECKPOINT_NAME)
    assert load_checkpoint(resumed_path)[2]["trainer"]["dropout_seed"] == expected_seed


class Interrupt:
    """Wraps a callable and raises KeyboardInterrupt at its `at`-th counted call (1-based), once."""

    def __init__(self, function, at, count_if=lambda: True, before_raising=lambda: None):
        self.function, self.at, self.count_if, self.before_raising = function, at, count_if, before_raising
        self.calls = 0

    def __call__(self, *args, **kwargs):
        if self.count_if():
            self.calls += 1
            if self.calls == self.at:
                self.before_raising()
                raise KeyboardInterrupt
        return self.function(*args, **kwargs)


INTERRUPT_SETTINGS = dict(max_steps=8, eval_every=2, schedule="cosine", warmup_steps=1, grad_clip=0.1, grad_accum_steps=2)


def resume_both_ways(tmp_path, interrupted, reference, expected_step):
    """After an interrupt: the checkpoint resumes exactly in a new trainer, and so does `fit()`
    again on the interrupted trainer itself."""
    path = os.path.join(tmp_path, CHECKPOINT_NAME)
    assert load_checkpoint(path)[2]["trainer"]["step"] == expected_step
    fresh = make_trainer(str(tmp_path / "fresh"), model_seed=9, **INTERRUPT_SETTINGS)
    fresh.load(path)
    fresh.fit()
    assert_identical(snapshot(fresh), reference)
    assert interrupted.step == expected_step
    interrupted.fit()
    assert_identical(snapshot(interrupted), reference)


# Training forwards 1-2 are step 1, ..., 7-8 step 4 (two micro-batches per step).
@pytest.mark.parametrize("forward_call", [1, 7, 8])
def test_interrupt_in_a_forward_pass_resumes_exactly(tmp_path, forward_call):
    reference = reference_run(**INTERRUPT_SETTINGS)
    trainer = make_trainer(str(tmp_path), **INTERRUPT_SETTINGS)
    model = trainer.model
    model.forward = Interrupt(model.forward, forward_call, count_if=lambda: model.training)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert all(parameter.grad is None for parameter in model.parameters())
    resume_both_ways(tmp_path, trainer, reference, expected_step=(forward_call - 1) // 2)


# Batches 1-2 are step 1, ...; 6 batches per epoch, so batch 7 is the first of the second epoch.
@pytest.mark.parametrize("batch_call", [2, 7, 8])
def test_interrupt_in_the_data_loader_resumes_exactly(tmp_path, batch_call):
    reference = reference_run(**INTERRUPT_SETTINGS)
    trainer = make_trainer(str(tmp_path), **INTERRUPT_SETTINGS)
    trainer.train_loader._batch = Interrupt(trainer.train_loader._batch, batch_call)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    expected_step = (batch_call - 1) // 2
    assert load_checkpoint(os.path.join(tmp_path, CHECKPOINT_NAME))[2]["trainer"]["tokens_seen"] == expected_step * 2 * 4 * CONTEXT
    resume_both_ways(tmp_path, trainer, reference, expected_step)


def test_interrupt_during_an_evaluation_keeps_the_evaluation(tmp_path):
    reference = reference_run(**INTERRUPT_SETTINGS)
    trainer = make_trainer(str(tmp_path), **INTERRUPT_SETTINGS)
    model = trainer.model
    # Evaluation forwards: 4 per evaluation (2 train + 2 validation batches); the 6th is in step 4's.
    model.forward = Interrupt(model.forward, 6, count_if=lambda: not model.training)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert trainer.history["step"] == [2] and model.training
    resume_both_ways(tmp_path, trainer, reference, expected_step=4)


def test_interrupt_inside_optimizer_step_keeps_the_last_checkpoint(tmp_path):
    settings = dict(INTERRUPT_SETTINGS, checkpoint_every=2)
    reference = reference_run(**settings)
    trainer = make_trainer(str(tmp_path), **settings)
    path = tmp_path / CHECKPOINT_NAME
    saved = {}

    def half_update():
        saved["bytes"] = path.read_bytes()  # the checkpoint of step 2
        first = next(trainer.model.parameters())
        first.data[...] += 1.0  # the update got half way

    trainer.optimizer.step = Interrupt(trainer.optimizer.step, 3, before_raising=half_update)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert path.read_bytes() == saved["bytes"]
    assert load_checkpoint(str(path))[2]["trainer"]["step"] == 2
    with pytest.raises(RuntimeError, match="load the last checkpoint"):
        trainer.fit()  # the weights in memory are broken: refuse to go on
    trainer.load(str(path))
    trainer.fit()
    assert_identical(snapshot(trainer), reference)


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(str(tmp_path), max_steps=4)
    trainer.fit(stop_at=2)
    path = tmp_path / CHECKPOINT_NAME
    before = path.read_bytes()

    def failing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"\x00" * 100)
        raise OSError("no space left on device")

    monkeypatch.setattr(checkpoint, "save_file", failing_save_file)
    with pytest.raises(OSError, match="no space"):
        trainer.fit(stop_at=3)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [CHECKPOINT_NAME, "history.json"]
    monkeypatch.undo()
    fresh = make_trainer(str(tmp_path), max_steps=4)
    fresh.load(str(path))
    assert fresh.step == 2


# ---- evaluation, schedule, bookkeeping --------------------------------------------------------------


def test_evaluation_and_sampling_do_not_change_training():
    tokenizer = CharTokenizer(ALPHABET)
    settings = dict(max_steps=8, grad_accum_steps=1)
    quiet = make_trainer(eval_every=1000, **settings)
    busy = make_trainer(eval_every=1, sample_every=1, sample_tokens=3, sample_prompt="ab", tokenizer=tokenizer, **settings)
    quiet.fit(), busy.fit()
    assert len(busy.history["step"]) == 8 and quiet.history["step"] == [8]
    for (name, a), b in zip(quiet.model.named_parameters(), busy.model.parameters()):
        assert np.array_equal(a.data, b.data), name
    assert quiet.train_loader.state_dict() == busy.train_loader.state_dict()


def test_schedule_and_clipping_follow_appendix_d(monkeypatch):
    trainer = make_trainer(max_steps=6, schedule="cosine", warmup_steps=2, lr=1e-2, initial_lr=1e-3, min_lr=2e-3, grad_clip=1.0)
    seen = []
    step = trainer.optimizer.step

    def recording_step():
        seen.append(("step", trainer.step, trainer.optimizer.param_groups[0]["lr"]))
        step()

    def recording_clip(parameters, max_norm):
        seen.append(("clip", trainer.step, max_norm))
        return 0.0

    trainer.optimizer.step = recording_step
    monkeypatch.setattr(trainer_module, "clip_grad_norm_", recording_clip)
    trainer.fit()
    expected_lrs = [warmup_cosine_lr(s, total_steps=6, warmup_steps=2, peak_lr=1e-2, initial_lr=1e-3, min_lr=2e-3) for s in range(6)]
    assert [lr for kind, _, lr in seen if kind == "step"] == expected_lrs
    assert expected_lrs[0] == 1e-3 and expected_lrs[2] == 1e-2
    assert [s for kind, s, _ in seen if kind == "clip"] == [2, 3, 4, 5]  # from step warmup_steps on
    assert trainer.history["lr"] == [expected_lrs[-1]]


def test_cosine_defaults_warm_up_from_and_decay_to_a_tenth():
    trainer = make_trainer(max_steps=10, schedule="cosine", warmup_steps=2, lr=1e-2)
    assert trainer.learning_rate(0) == pytest.approx(1e-3)
    assert trainer.learning_rate(2) == pytest.approx(1e-2)
    assert trainer.learning_rate(10) == pytest.approx(1e-3)


def test_epochs_and_bookkeeping(tmp_path):
    trainer = make_trainer(str(tmp_path), epochs=2, eval_every=4, checkpoint_every=5)
    assert trainer.total_steps == 2 * 6
    history = trainer.fit()
    assert trainer.step == 12 and trainer.tokens_seen == 12 * 4 * CONTEXT
    assert history["step"] == [4, 8, 12] and history["tokens_seen"] == [s * 4 * CONTEXT for s in (4, 8, 12)]
    assert all(np.isfinite(history["train_loss"])) and all(np.isfinite(history["val_loss"]))
    assert trainer.train_loader.epoch == 2
    metadata = load_checkpoint(str(tmp_path / CHECKPOINT_NAME))[2]
    assert metadata["trainer"]["step"] == 12 and metadata["trainer"]["training_config"]["epochs"] == 2
    assert os.path.exists(tmp_path / "history.json")


def test_checkpoint_every_without_out_dir_saves_nothing():
    trainer = make_trainer(max_steps=3, checkpoint_every=1)
    trainer.fit()
    assert trainer.step == 3


def test_val_loader_none_records_nan():
    trainer = make_trainer(max_steps=2, eval_every=1)
    trainer.val_loader = None
    trainer.fit()
    assert all(np.isnan(trainer.history["val_loss"]))


# ---- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("max_steps", 0), ("epochs", 0), ("lr", 0.0), ("schedule", "linear"), ("warmup_steps", -1),
    ("weight_decay", -0.1), ("grad_clip", 0.0), ("grad_accum_steps", 0), ("eval_every", 0),
    ("eval_batches", 0), ("sample_every", -1), ("sample_tokens", -1), ("checkpoint_every", -1),
])
def test_bad_training_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**{field: value}).validate()
    with pytest.raises(ValueError, match=field):
        make_trainer(**{field: value})


def test_trainer_errors(tmp_path):
    with pytest.raises(ValueError, match="warmup_steps=5 must be smaller than the run's 5 steps"):
        make_trainer(max_steps=5, schedule="cosine", warmup_steps=5)
    with pytest.raises(ValueError, match="6 batches per epoch, fewer than grad_accum_steps=7"):
        make_trainer(max_steps=5, grad_accum_steps=7)
    with pytest.raises(ValueError, match="no path given"):
        make_trainer(max_steps=1).save()
    weights_only = str(tmp_path / "weights.safetensors")
    trainer = make_trainer(max_steps=1)
    save_checkpoint(weights_only, trainer.model.state_dict(), None, {})
    with pytest.raises(ValueError, match="no trainer state"):
        trainer.load(weights_only)
    with pytest.raises(FileNotFoundError):
        trainer.load(str(tmp_path / "missing.safetensors"))


def test_loading_a_checkpoint_of_another_model_fails_cleanly(tmp_path):
    trainer = make_trainer(str(tmp_path), max_steps=1)
    trainer.fit()
    other_model = GPTModel({**CFG, "emb_dim": 32}, rng=0)
    other = Trainer(other_model, AdamW(other_model.parameters()), trainer.train_loader, None, TrainingConfig(max_steps=1))
    with pytest.raises(ValueError, match="shape"):
        other.load(str(tmp_path / CHECKPOINT_NAME))


def test_a_diverging_loss_stops_before_the_update(tmp_path):
    """NaN loss: FloatingPointError naming the step, and the weights stay as they were."""
    from minigpt.data import DataLoader, GPTDataset
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW
    from minigpt.trainer import Trainer, TrainingConfig

    ids = np.random.default_rng(0).integers(0, 20, 200)
    loader = DataLoader(GPTDataset(ids, None, 8, 8), batch_size=2, shuffle=True, drop_last=True, seed=0)
    model = GPTModel(dict(vocab_size=20, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False), rng=0)
    trainer = Trainer(model, AdamW(model.parameters(), lr=1e-3), loader, None, TrainingConfig(max_steps=3), out_dir=None)
    trainer.fit(stop_at=1)
    model.final_norm.scale.data[0] = np.nan  # poison: every logit, so every loss, becomes NaN
    before = {name: value.copy() for name, value in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match=f"loss of step {trainer.step + 1} is nan"):
        trainer.fit()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
