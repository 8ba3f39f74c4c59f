"""The run machinery of `minigpt train` and the fine-tuning commands: `Trainer` and its settings.

`Trainer` is appendix D's loop (D.4) as a real run needs it: linear warmup and cosine decay of the
learning rate, gradient clipping, gradient accumulation over micro-batches, evaluation every N
steps, tokens seen, a tqdm progress bar, atomic checkpoints with exact resume, Ctrl-C and SIGTERM
handled at safe points (`minigpt.interrupts`), data parallelism over MPI (`minigpt.distributed`),
and the loss plot. `TrainingConfig` holds its settings (one field per `minigpt train` flag);
`weight_decay_groups` and `with_optimizer_settings` tie them to the optimizer;
`CheckpointSaveError` is what a failed save raises. The book's own chapter-5 loop, which this one
extends, is `minigpt.train.train_model_simple`; the losses and plots come from `minigpt.train`.

Shape letters: B batch, T tokens (context), V vocabulary.

References: Raschka, "Build a Large Language Model (From Scratch)", section 5.2 and appendix D
(D.1 warmup, D.2 cosine decay, D.3 gradient clipping, D.4 the modified loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time

import numpy as np
from tqdm.auto import tqdm

from autograd import functional as F
from autograd import no_grad
from autograd.random import Generator, default_generator, random_bits
from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from minigpt.data import DataLoader, GPTDataset
from minigpt.distributed import SINGLE_PROCESS, GradientBuckets, check_ranks_agree
from minigpt.generate import generate, text_to_token_ids, token_ids_to_text
from minigpt.interrupts import SaveAbandoned, StopRequests
from minigpt.optim import clip_grad_norm_, flatten_state_dict, unflatten_state_dict, warmup_cosine_lr
from minigpt.train import calc_loss_batch, calc_loss_loader, plot_losses, save_plot



@dataclasses.dataclass
class TrainingConfig:
    """Settings of a training run (every field is a `minigpt train` flag of the same name).

    Attributes:
        max_steps: optimizer steps in the run; None means `epochs` passes over the training data.
        epochs: passes over the training data when max_steps is None.
        lr: the peak learning rate (per step, AdamW's alpha). None (the default): the optimizer's
            lr, as the book's `AdamW(model.parameters(), lr=0.0004, ...)` sets it. The trainer's
            schedule sets the optimizer's lr before every step, from this peak.
        schedule: "constant" (the book's chapter 5) or "cosine" (appendix D: linear warmup from
            `initial_lr` to `lr`, then cosine decay to `min_lr`).
        warmup_steps: steps of linear warmup (cosine schedule only).
        initial_lr: learning rate at step 0 of the warmup; None means lr / 10 (as appendix D,
            which warms up from 1e-4 to a peak of 1e-3 in D.1).
        min_lr: learning rate at the last step of the cosine decay; None means lr / 10.
        weight_decay: AdamW's decoupled weight decay (per step, multiplied by lr). None (the
            default): the optimizer's. The optimizer applies it; the trainer records it.
        betas: AdamW's moment decay rates. None (the default): the optimizer's.
        (lr, weight_decay and betas have one source of truth: a value given both here and to the
        optimizer must be the same, or `Trainer` raises ValueError naming both.)
        grad_clip: clip the global gradient norm to this value from step `warmup_steps` on (as
            appendix D); None disables clipping.
        grad_accum_steps: micro-batches per optimizer step; the update equals one step on all
            of them at once (the loss is normalised by the total number of target tokens).
        eval_every: evaluate train and validation loss every this many steps (and at the end).
        eval_batches: batches per loss estimate (the book's eval_iter).
        sample_every: print a greedy sample every this many steps; 0 never during `fit` (the
            `minigpt train` command prints one at the end).
        sample_prompt: the prompt of the samples (the book: "Every effort moves you").
        sample_tokens: tokens per sample.
        checkpoint_every: save a checkpoint every this many steps; 0: not by steps.
        checkpoint_minutes: save a checkpoint when this many minutes (wall time) have passed
            since the last one; 0: not by time. A checkpoint is always saved at the end and on
            Ctrl-C or SIGTERM. Nothing is saved when the trainer has no out_dir.
        seed: seeds initialisation, dropout and shuffling.
    """

    max_steps: int | None = None
    epochs: int = 1
    lr: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    initial_lr: float | None = None
    min_lr: float | None = None
    weight_decay: float | None = None
    betas: tuple | None = None
    grad_clip: float | None = None
    grad_accum_steps: int = 1
    eval_every: int = 50
    eval_batches: int = 5
    sample_every: int = 0
    sample_prompt: str = "Every effort moves you"
    sample_tokens: int = 50
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0
    seed: int = 123

    def validate(self) -> None:
        """Raise ValueError naming the first field out of range."""
        checks = [
            ("max_steps", self.max_steps is None or self.max_steps >= 1, ">= 1 or None"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("lr", self.lr is None or (math.isfinite(self.lr) and self.lr > 0), "a finite number > 0"),
            ("min_lr", self.min_lr is None or (math.isfinite(self.min_lr) and self.min_lr >= 0), "a finite number >= 0"),
            ("schedule", self.schedule in ("constant", "cosine"), "'constant' or 'cosine'"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("weight_decay", self.weight_decay is None or self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 or None"),
            ("grad_accum_steps", self.grad_accum_steps >= 1, ">= 1"),
            ("eval_every", self.eval_every >= 1, ">= 1"),
            ("eval_batches", self.eval_batches >= 1, ">= 1"),
            ("sample_every", self.sample_every >= 0, ">= 0"),
            ("sample_tokens", self.sample_tokens >= 0, ">= 0"),
            ("checkpoint_every", self.checkpoint_every >= 0, ">= 0"),
            ("checkpoint_minutes", math.isfinite(self.checkpoint_minutes) and self.checkpoint_minutes >= 0, "a finite number >= 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")


def weight_decay_groups(model, weight_decay: float) -> list[dict]:
    """Parameter groups in which only matrices (2-D weights of Linear layers) are decayed.

    Biases, LayerNorm scales and shifts, and embeddings get weight_decay 0, as nanoGPT and
    GPT-2-style recipes do: decaying a LayerNorm scale towards 0 or an embedding row that a rare
    token seldom updates does not regularise anything useful. The book (chapter 5) decays all
    parameters instead; `minigpt train` does that unless asked otherwise.
    """
    decayed, not_decayed = [], []
    for name, parameter in model.named_parameters():
        is_embedding = name.startswith(("tok_emb", "pos_emb"))
        (decayed if parameter.ndim >= 2 and not is_embedding else not_decayed).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": not_decayed, "weight_decay": 0.0}]


def with_optimizer_settings(config: TrainingConfig, optimizer) -> TrainingConfig:
    """A copy of `config` whose lr, weight_decay and betas are the optimizer's where they were None.

    One source of truth for each number: the book builds `AdamW(model.parameters(), lr=0.0004,
    weight_decay=0.1)`, and a trainer that replaced that lr with a default of its own, or
    recorded a weight decay the optimizer never applies, would train with another recipe than
    the one written. The optimizer's value of a setting is that of its parameter groups: lr and
    betas must be the same in every group (the schedule sets one lr for all); for weight decay
    the groups at 0 are left out (`weight_decay_groups` exempts biases, norms and embeddings).

    Raises:
        ValueError: a setting given in the config differs from the optimizer's (the message
            names both values), or the optimizer's groups disagree on one.
    """
    resolved = {}
    for name in ("lr", "weight_decay", "betas"):
        values = {_setting_value(group.get(name)) for group in optimizer.param_groups}
        if name == "weight_decay" and len(values) > 1:
            values.discard(0.0)  # the exempted groups
        if len(values) > 1:  # nothing to take the peak lr (or betas) from
            raise ValueError(
                f"the optimizer's parameter groups have different {name} values {sorted(values, key=str)}: "
                f"the trainer needs one; give every group the same {name}"
            )
        optimizer_value = values.pop()
        ours = getattr(config, name)
        if ours is None:
            resolved[name] = optimizer_value
        elif _setting_value(ours) != optimizer_value:
            raise ValueError(
                f"TrainingConfig.{name}={ours!r} but the optimizer's {name} is {optimizer_value!r}: give {name} in one "
                f"place (leave TrainingConfig.{name} as None to use the optimizer's), or the same value in both"
            )
    return dataclasses.replace(config, **resolved)


def _setting_value(value):
    """A hyperparameter in a comparable, hashable form: floats, and betas as a tuple of floats."""
    if isinstance(value, (tuple, list)):
        return tuple(float(item) for item in value)
    return None if value is None else float(value)


class CheckpointSaveError(OSError):
    """A run's checkpoint could not be written in its folder; the message says why (folder,
    reason, bytes needed and free) and where the weights were rescued, if anywhere."""


class Trainer:
    """Trains a model with appendix D's loop and keeps everything needed to resume exactly.

    One step: take `grad_accum_steps` micro-batches, back-propagate each one's summed
    cross-entropy divided by the number of target tokens in all of them, set the learning rate
    from the schedule, clip the gradient norm (from step `warmup_steps` on), take an optimizer
    step. Every `eval_every` steps the train and validation losses are estimated and recorded
    with the tokens seen so far.

    Args:
        model: a GPTModel (anything with the same call, parameters, state_dict, train/eval).
        optimizer: e.g. `minigpt.optim.AdamW(model.parameters(), ...)`.
        train_loader, val_loader: `minigpt.data.DataLoader`s (val_loader may be None).
        config: a `TrainingConfig`.
        tokenizer: used for samples (and recorded in checkpoints via `tokenizer_spec`).
        out_dir: where `checkpoint.safetensors`, `history.json` and `loss.png` go; None saves nothing.
        run_info: JSON-able dict stored in each checkpoint (model config, data files,
            tokenizer spec) so that `--resume` can rebuild the run.
        world: a `minigpt.distributed.World` for data-parallel training over MPI (default: one
            process). Each step then draws the global batch of `grad_accum_steps` x world.size
            micro-batches (the same on every rank), rank r runs forward and backward on micro-batches
            r * grad_accum_steps to (r + 1) * grad_accum_steps - 1, one Allreduce sums the gradients,
            and every rank takes the same optimizer step: the result equals one process with
            `grad_accum_steps` x world.size up to float32 summation order. Rank 0 alone shows the
            progress bar, prints, and writes checkpoints and the plot; evaluation batches are split
            over the ranks and their losses summed.
        bucket_cap_mb: with more than one rank, send the gradients in buckets of at most this
            many megabytes, each started during the step's last backward as soon as its gradients
            are complete (`minigpt.distributed.GradientBuckets`, PyTorch DDP's `bucket_cap_mb`);
            None (the default): one Allreduce of all gradients after backward. Ignored by a
            single process. With 2 ranks the result is bit for bit the same either way (see GradientBuckets).

    Dropout: before the forward pass of micro-batch i of step s's global batch (i = rank x
    grad_accum_steps + j, the same index on whichever rank runs it), the model's `dropout_rng` is
    re-seeded from `SeedSequence(dropout_seed, spawn_key=(s, i))`, NumPy's documented way to make
    independent streams (JAX's `fold_in` and counter-based generators are the same idea). The masks of
    a micro-batch then depend only on (seed, step, index), not on the micro-batches drawn before it,
    so N ranks equal one process with grad_accum_steps x N also with dropout > 0, and a rolled-back
    or resumed step draws its masks again exactly.

    Attributes:
        step: optimizer steps taken; tokens_seen: input tokens processed;
        history: dict of lists `step`, `tokens_seen`, `train_loss`, `val_loss`, `lr`.
        gradient_buckets: the `GradientBuckets` of a multi-rank run with `bucket_cap_mb`, else None
            (one Allreduce after backward).
        dropout_seed: the run's dropout seed (an int in [0, 2**63)), drawn once from the model's
            own `dropout_rng` when the trainer is built (so the model's seed, `--seed`, decides it
            and every rank draws the same), saved in checkpoints and restored by `load`; None for
            a model without `dropout_rng`, whose dropout (if any) draws from its own generators.

    References: NumPy, "Parallel random number generation" (SeedSequence spawning,
    numpy.org/doc/stable/reference/random/parallel.html); Salmon et al. 2011, "Parallel random
    numbers: as easy as 1, 2, 3" (counter-based streams; JAX's `jax.random.fold_in`).
    """

    def __init__(self, model, optimizer, train_loader, val_loader, config: TrainingConfig, tokenizer=None, out_dir: str | None = None, run_info: dict | None = None, world=None,
                 bucket_cap_mb: float | None = None):
        config.validate()
        config = with_optimizer_settings(config, optimizer)
        config.validate()  # the optimizer's lr must be a valid peak too
        self.world = SINGLE_PROCESS if world is None else world
        self.batches_per_step = config.grad_accum_steps * self.world.size  # the global batch, in micro-batches
        if len(train_loader) < self.batches_per_step:
            ranks = f" x {self.world.size} ranks" if self.world.size > 1 else ""
            raise ValueError(
                f"the training data gives {len(train_loader)} batches per epoch, fewer than "
                f"grad_accum_steps={config.grad_accum_steps}{ranks}: use a smaller batch or more data"
            )
        self.model, self.optimizer = model, optimizer
        self.gradient_buckets = None  # None: one Allreduce after backward (World.allreduce_gradients)
        if bucket_cap_mb is not None:
            buckets = GradientBuckets(self.world, model.parameters(), bucket_cap_mb)  # checks the value
            self.gradient_buckets = buckets if self.world.size > 1 else None
        self.train_loader, self.val_loader = train_loader, val_loader
        self.config, self.tokenizer, self.out_dir = config, tokenizer, out_dir
        self.run_info = dict(run_info or {})
        self.steps_per_epoch = len(train_loader) // self.batches_per_step
        self.total_steps = config.max_steps if config.max_steps is not None else config.epochs * self.steps_per_epoch
        self.step = 0
        self.tokens_seen = 0
        self.history = {"step": [], "tokens_seen": [], "train_loss": [], "val_loss": [], "lr": []}
        # The seed of every micro-batch's dropout stream (see `_seed_dropout`): drawn from the
        # model's generator, which the model's seed fixed, so every rank of a run draws the same.
        dropout_rng = getattr(model, "dropout_rng", None)
        self.dropout_seed = None if dropout_rng is None else _draw_seed(dropout_rng)
        self._batches = None  # the iterator over the current epoch of train_loader
        # Interrupt bookkeeping (see `train_step` and `fit`): inside a step, inside its parameter
        # update, the position before the step, an evaluation that is due but not recorded yet,
        # and a parameter update that was cut short (the weights in memory are then unusable).
        self._mid_step = self._updating = False
        self._tokens_this_step = 0
        self._position_before_step = None
        self._eval_due = False
        self._half_updated = False
        # Signals during `fit` (see minigpt/interrupts.py); the step of the checkpoint in out_dir
        # that this trainer wrote or loaded, and what it held (`_progress_marker`); the wall time
        # of the last save.
        self._stops = None
        self._saved_step = self._saved_at = None
        self._last_save_time = time.monotonic()
        self.quiet = False  # True: no progress bar (it also hides itself when stderr is not a terminal)
        self.stop_signal = None  # the signal (SIGINT, SIGTERM) that stopped the last `fit`, if any
        self.stop_report = None  # what `fit` printed when it was stopped
        # Loss estimates read an unshuffled loader over the same tokens (see `evaluate`), in
        # windows that do not overlap, so that a few batches cover a stretch of the text even
        # when training windows start at every token (stride 1).
        eval_dataset = train_loader.dataset
        if isinstance(eval_dataset, GPTDataset) and eval_dataset.stride < eval_dataset.max_length:
            eval_dataset = GPTDataset(eval_dataset.token_ids, None, eval_dataset.max_length, eval_dataset.max_length)
        # The same collate_fn: a dataset of examples of different lengths (chapter 7) is padded by it.
        self._train_eval_loader = DataLoader(eval_dataset, batch_size=train_loader.batch_size,
                                             collate_fn=getattr(train_loader, "collate_fn", None))
        if config.schedule == "cosine" and config.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps={config.warmup_steps} must be smaller than the run's {self.total_steps} steps")

    # ---- the schedule -----------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        config = self.config
        if config.schedule == "constant":
            return config.lr
        initial_lr = config.lr / 10 if config.initial_lr is None else config.initial_lr
        min_lr = config.lr / 10 if config.min_lr is None else config.min_lr
        return warmup_cosine_lr(
            min(step, self.total_steps), total_steps=self.total_steps, warmup_steps=config.warmup_steps,
            peak_lr=config.lr, initial_lr=initial_lr, min_lr=min_lr,
        )

    # ---- data -------------------------------------------------------------------------------
    def _next_batch(self):
        """The next training batch, starting a new epoch (a new shuffle) when one runs out.

        The loader itself records its epoch, its shuffle state and the batches it handed out,
        so its `state_dict()` is the exact position in the data for a checkpoint.
        """
        while True:
            if self._batches is None:
                self._batches = iter(self.train_loader)
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = None

    # ---- one optimizer step -----------------------------------------------------------------
    def train_step(self) -> float:
        """Run one optimizer step over `grad_accum_steps` micro-batches; return its mean loss.

        Each micro-batch's dropout masks come from its own stream, seeded by (dropout_seed, step,
        index in the global batch) (see the class docstring and `_seed_dropout`).
        """
        if self._half_updated:
            raise RuntimeError(
                "an interrupt stopped an earlier optimizer step half way, so the weights in memory are "
                "partly updated: load the last checkpoint (Trainer.load) before training on"
            )
        # Where the data and the dropout generator stood before this step: an interrupt in the
        # middle of the step rewinds to these (see `_rewind_partial_step`), so the resumed run
        # redoes the whole step.
        self._position_before_step = self._position()
        self._tokens_this_step = 0  # NOTE: before _mid_step, so it never holds the last step's count
        self._mid_step = True
        micro_batches = [self._next_batch() for _ in range(self.batches_per_step)]  # the global batch, on every rank
        target_tokens = sum(int(np.count_nonzero(targets != -100)) for _, targets in micro_batches)
        if target_tokens == 0:
            raise ValueError(f"step {self.step}: every target of its {len(micro_batches)} micro-batch(es) is ignore_index (-100)")
        self.model.train()
        total_loss = 0.0
        accum, rank = self.config.grad_accum_steps, self.world.rank
        for number, (inputs, targets) in enumerate(micro_batches[rank * accum:(rank + 1) * accum]):  # this rank's shard
            self._check_stop()  # a safe point: an interrupt here rolls the step back
            self._seed_dropout(rank * accum + number)  # its index in the global batch, the same on any rank
            logits = self.model(inputs)  # (B, T, V)
            # Sum over this micro-batch's targets, divided by all targets of the step: the
            # accumulated gradient is then exactly that of the mean over the whole batch.
            loss = F.cross_entropy(logits.flatten(0, 1), targets.reshape(-1), reduction="sum") * (1.0 / target_tokens)
            total_loss += loss.item()
            if self.gradient_buckets is not None and number == accum - 1:
                # The last backward of the step completes each gradient: send them in buckets
                # while backward goes on down the layers.
                self.gradient_buckets.arm(total_loss)
            loss.backward()
            del logits, loss  # free this micro-batch's activations before the next forward
        # Sum the gradients and the loss over the ranks (no-op on one process): every rank then
        # holds the gradient of the global batch's mean loss, and sees a NaN any rank produced.
        if self.gradient_buckets is not None:
            total_loss = self.gradient_buckets.finish()
        else:
            total_loss = self.world.allreduce_gradients(self.model.parameters(), total_loss)
        self._tokens_this_step = sum(inputs.size for inputs, _ in micro_batches)
        self.tokens_seen += self._tokens_this_step
        if not math.isfinite(total_loss):
            # Stop before the update: NaN or inf gradients would spoil every weight, and the
            # last checkpoint on disk stays the last good state.
            self.optimizer.zero_grad()
            raise self._non_finite_loss_error(total_loss, micro_batches)
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.config.grad_clip is not None and self.step >= self.config.warmup_steps:
            clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self._check_stop()  # the last safe point before the update, which signals do not cut
        self._updating = True  # parameters change in place from here until the step is counted
        self.optimizer.step()
        self.step += 1
        self._updating = self._mid_step = False
        self.optimizer.zero_grad()
        return total_loss

    def _non_finite_loss_error(self, total_loss: float, micro_batches: list) -> FloatingPointError:
        """The error for a NaN or infinite loss, naming its likely cause.

        Only a loss that turns bad after parameter updates points at the learning rate; at the
        first step, or with non-finite inputs or parameters, lowering it cannot help.
        """
        prefix = f"the loss of step {self.step + 1} is {total_loss}"
        if any(np.asarray(inputs).dtype.kind == "f" and not np.isfinite(inputs).all() for inputs, _ in micro_batches):
            return FloatingPointError(f"{prefix}: the inputs of the batch hold inf or NaN; the learning rate is not the cause")
        if not all(np.isfinite(parameter.data).all() for parameter in self.model.parameters()):
            return FloatingPointError(
                f"{prefix}: the model's parameters hold inf or NaN before this step (from their "
                f"initialisation, a loaded checkpoint or a change by hand); the learning rate is not the cause"
            )
        if self.step == 0:
            return FloatingPointError(
                f"{prefix} before any parameter update: the model's logits for these inputs are not "
                f"finite (check the model's initialisation, dtype and inputs); the learning rate is not the cause"
            )
        return FloatingPointError(
            f"{prefix}: training diverged; lower the learning rate (now {self.learning_rate(self.step):g}) "
            f"or clip gradients"
        )

    def _seed_dropout(self, index: int) -> None:
        """Give the model's dropout generator the stream of micro-batch `index` of this step's
        global batch: `SeedSequence(dropout_seed, spawn_key=(step, index))` (NumPy's independent
        streams; see the class docstring). Nothing for a model without `dropout_rng`."""
        dropout_rng = getattr(self.model, "dropout_rng", None)
        if dropout_rng is None or self.dropout_seed is None or dropout_rng is default_generator:
            return  # a model drawing from the default generator draws in order, as PyTorch
        stream = np.random.SeedSequence(self.dropout_seed, spawn_key=(self.step, index))
        # NOTE: the state is set in place rather than a new generator assigned, so that every
        # Dropout holding this generator (GPTModel wires its one generator into all of them)
        # draws from the new stream; the same kind of bit generator keeps the state compatible.
        _reseed(dropout_rng, stream)

    def _position(self) -> dict:
        """The data loader's and the dropout generator's states and the run's dropout seed, JSON-able."""
        dropout_rng = getattr(self.model, "dropout_rng", None)
        return {
            "train_loader_state": _jsonable(self.train_loader.state_dict()),
            "dropout_rng_state": None if dropout_rng is None else _generator_state(dropout_rng),
            "dropout_seed": self.dropout_seed,
        }

    def _set_position(self, position: dict) -> None:
        """Put the data loader, the dropout generator and the dropout seed back where `_position()` saw them."""
        self.train_loader.load_state_dict(position["train_loader_state"])
        self._batches = None  # the next batch continues the loader from that position
        dropout_rng = getattr(self.model, "dropout_rng", None)
        if dropout_rng is not None and position.get("dropout_rng_state") is not None:
            _set_generator_state(dropout_rng, position["dropout_rng_state"])
        if position.get("dropout_seed") is not None:
            self.dropout_seed = position["dropout_seed"]
        elif dropout_rng is not None:
            # A checkpoint from before per-micro-batch dropout streams holds the generator's state
            # but no seed (or one of a model without dropout_rng): draw the seed from the restored generator, as __init__ draws it from a
            # fresh one. The resumed run is exact and reproducible from then on (its next checkpoint
            # holds this seed), though its masks are not those the old sequential stream would
            # have drawn.
            self.dropout_seed = _draw_seed(dropout_rng)

    def _rewind_partial_step(self) -> None:
        """Undo a step interrupted before its parameter update: drop its gradients, batches,
        dropout draws and tokens, so that both this trainer and a checkpoint of it stand exactly
        at the end of the last completed step (the weights have not changed yet)."""
        self.optimizer.zero_grad()
        self._set_position(self._position_before_step)
        self.tokens_seen -= self._tokens_this_step
        self._tokens_this_step = 0
        self._mid_step = False

    # ---- the loop ---------------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        """True when every step of the run is taken and the last step's evaluation is recorded.

        NOTE: a run interrupted between its last update and that evaluation is saved with the
        evaluation still due; `fit()` records it first, so such a run is not complete yet.
        """
        return self.step >= self.total_steps and not self._eval_due

    def evaluate(self) -> tuple[float, float]:
        """Estimate train and validation loss on `eval_batches` batches each and record them.

        NOTE: the training batches for the estimate come from an unshuffled loader over the same
        windows, not from `train_loader`: iterating that would draw a shuffle order from its
        generator and so change the order of all later epochs (and break exact resume).
        """
        self.model.eval()
        train_loss = self._estimate_loss(self._train_eval_loader)
        val_loss = float("nan") if self.val_loader is None else self._estimate_loss(self.val_loader)
        self.model.train()
        with self._deferred_signals():  # all five lists, or none
            self.history["step"].append(self.step)
            self.history["tokens_seen"].append(self.tokens_seen)
            self.history["train_loss"].append(train_loss)
            self.history["val_loss"].append(val_loss)
            self.history["lr"].append(self.learning_rate(max(self.step - 1, 0)))
            self._eval_due = False
        return train_loss, val_loss

    def _estimate_loss(self, loader) -> float:
        """`calc_loss_loader` over `eval_batches` batches; over MPI, batch i is computed by rank
        i % world.size and the sum of the batch losses is allreduced (same value on every rank)."""
        world = self.world
        if world.size == 1:
            return calc_loss_loader(loader, self.model, num_batches=self.config.eval_batches)
        if len(loader) == 0:
            return float("nan")
        num_batches = min(self.config.eval_batches, len(loader))
        total = 0.0
        with no_grad():
            for i, (input_batch, target_batch) in enumerate(loader):
                if i >= num_batches:
                    break
                if i % world.size == world.rank:
                    total += calc_loss_batch(input_batch, target_batch, self.model).item()
        return world.allreduce_sum(total) / num_batches

    def _evaluate_and_report(self) -> None:
        train_loss, val_loss = self.evaluate()
        if not self.world.is_main:
            return
        tqdm.write(
            f"step {self.step:6d} | epoch {self.train_loader.epoch} | tokens {self.tokens_seen:,} | "
            f"train loss {train_loss:.3f} (ppl {math.exp(min(train_loss, 50)):.1f}) | "
            f"val loss {val_loss:.3f} (ppl {math.exp(min(val_loss, 50)) if val_loss == val_loss else float('nan'):.1f})"
        )

    def sample(self) -> str | None:
        """Print and return a greedy sample of `sample_tokens` tokens after the sample prompt."""
        if self.tokenizer is None or self.config.sample_tokens == 0 or not self.world.is_main:
            return None
        # GPT-2's learned positions fix its context; Llama 3 / Qwen3 (RoPE) say it in their config.
        context_size = self.model.pos_emb.weight.shape[0] if hasattr(self.model, "pos_emb") else self.model.cfg["context_length"]
        prompt = text_to_token_ids(self.config.sample_prompt, self.tokenizer)
        ids = generate(self.model, prompt, max_new_tokens=self.config.sample_tokens, context_size=context_size)
        text = token_ids_to_text(ids, self.tokenizer)
        tqdm.write(f"sample @ step {self.step}: {text!r}")
        return text

    def fit(self, stop_at: int | None = None) -> dict:
        """Train until `total_steps` (or until `stop_at`, to split a run for testing resume).

        Evaluation happens every `eval_every` steps and after the run's last step (`total_steps`,
        not `stop_at`, so that a run split by `stop_at` records the same history as one piece).
        A checkpoint is saved every `checkpoint_every` steps, every `checkpoint_minutes` of wall
        time, at the end, and when the run is stopped (when out_dir is set).

        Ctrl-C and SIGTERM (see minigpt/interrupts.py): a step is never cut inside its parameter
        update; a signal there lets the update finish, a signal earlier in the step rolls the step
        back (its batches, dropout draws and tokens are rewound). Then a checkpoint of the last
        completed step is saved and KeyboardInterrupt is raised (`stop_signal` tells which
        signal); `fit()` again, or `load` + `fit()` in a new process, continues exactly. A second
        signal prints "saving checkpoint... press Ctrl-C again to abandon it"; a third one after
        it abandons the save (`SaveAbandoned`, a KeyboardInterrupt), keeping the previous
        checkpoint. A KeyboardInterrupt raised by code inside `optimizer.step()` (not by a
        signal) leaves half-updated weights: the checkpoint on disk is kept, and this trainer
        refuses to go on until a checkpoint is loaded.

        Returns:
            The history dict.

        Raises:
            FloatingPointError: a step's loss is NaN or infinite (the parameters are left as they
                were before that step).
            CheckpointSaveError (an OSError): a checkpoint could not be written (disk full,
                read-only folder); its message says where the weights were rescued, if anywhere.
        """
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        self._check_ranks_agree()
        progress = tqdm(total=end, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                        disable=True if self.quiet or not self.world.is_main else None)  # None: hidden when not on a terminal
        started = time.perf_counter()
        self._last_save_time = time.monotonic()
        stops = self._stops = StopRequests(quiet=not self.world.is_main)  # rank 0 alone reports
        try:
            stops.install()
            if self._eval_due:  # an interrupt came before the last step's evaluation was recorded
                self._evaluate_and_report()
            while self.step < end:
                with stops.defer():
                    loss = self.train_step()
                    # Part of the step: an interrupt between the two would lose this evaluation.
                    self._eval_due = self.step % self.config.eval_every == 0 or self.step == self.total_steps
                stops.check()  # a signal that came during the update: the step is complete
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3f}", lr=f"{self.learning_rate(self.step - 1):.2e}")
                if self._eval_due:
                    self._evaluate_and_report()
                if self.config.sample_every and self.step % self.config.sample_every == 0:
                    self.sample()
                if self.out_dir is not None and self._periodic_save_due():
                    with stops.defer():
                        self._save_or_rescue()
                    stops.check()
            if self.out_dir is not None:
                with stops.defer():
                    self._save_or_rescue()
                stops.check()
        except KeyboardInterrupt as interrupt:
            progress.close()
            self.stop_signal = stops.signal
            self._save_after_interrupt(interrupt, stops)
            raise
        finally:
            stops.restore()
            self._stops = None
        progress.close()
        self.elapsed_seconds = time.perf_counter() - started
        try:
            self.plot()
        except KeyboardInterrupt:  # the run is complete and saved; only the plot is missing
            self._report(f"interrupted while drawing loss.png: checkpoint of step {self.step} saved in {self.out_dir}")
            raise
        return self.history

    def _check_ranks_agree(self) -> None:
        """Over MPI: stop with RuntimeError if the ranks differ in weights, optimizer state, settings,
        data or position in it (a different seed, command line, data file or checkpoint)."""
        if self.world.size == 1:
            return
        dataset = self.train_loader.dataset
        check_ranks_agree(
            self.world,
            weights=[parameter.data for parameter in self.model.parameters()],
            optimizer_state=flatten_state_dict(self.optimizer.state_dict())[1],
            training_config=dataclasses.asdict(self.config),
            data=getattr(dataset, "token_ids", len(dataset)),
            data_position=[self._position(), self.step, self.tokens_seen],
        )

    def _check_stop(self) -> None:
        """A safe point inside a step: raise KeyboardInterrupt if a signal asked to stop."""
        if self._stops is not None:
            self._stops.check()

    def _deferred_signals(self):
        """A region that a signal must not cut (outside `fit`: no effect)."""
        return contextlib.nullcontext() if self._stops is None else self._stops.defer()

    def _periodic_save_due(self) -> bool:
        every, minutes = self.config.checkpoint_every, self.config.checkpoint_minutes
        return bool((every and self.step % every == 0)
                    or (minutes and time.monotonic() - self._last_save_time >= 60 * minutes))

    def _save_after_interrupt(self, interrupt: KeyboardInterrupt, stops: StopRequests) -> None:
        """After an interrupt in `fit`: put the trainer at the end of its last complete step, save
        it (unless the save is abandoned) and print what happened, truthfully."""
        name = stops.signal_name if stops.signal is not None else "interrupted"
        kept = (f"the checkpoint of step {self._saved_step} in {self.out_dir} is kept as it was"
                if self._saved_step is not None else "nothing was saved in this run")
        if self._updating:
            # Cut inside optimizer.step() (by code, not by a signal, which waits for the update):
            # the weights are half updated, so the checkpoint on disk is the good one.
            self._half_updated = True
            self._updating = self._mid_step = False
            self.optimizer.zero_grad()  # or a later step would add this step's gradients to its own
            self._report(f"{name} during a parameter update: the weights in memory are unusable; {kept}")
            return
        if self._mid_step:
            self._rewind_partial_step()
        self.optimizer.zero_grad()
        self.model.train()  # an interrupted evaluation or sample leaves eval mode on
        if isinstance(interrupt, SaveAbandoned):
            self._report(f"save abandoned: {kept}")
            return
        if self.out_dir is None:
            return
        if self._saved_at != self._progress_marker():
            try:
                with stops.defer():
                    self._save_or_rescue()
            except SaveAbandoned:
                self._report(f"save abandoned: {kept}")
                return
        self._report(f"{name}: checkpoint of step {self.step} saved in {self.out_dir}; continue with --resume {self.out_dir}")

    def _report(self, message: str) -> None:
        self.stop_report = message
        print("\n" + message)

    # ---- checkpoints ------------------------------------------------------------------------
    def state(self) -> dict:
        """The trainer's JSON-able state (everything but the model's and optimizer's arrays)."""
        position = self._position_before_step if self._mid_step else self._position()
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen - (self._tokens_this_step if self._mid_step else 0),
            **position,
            "eval_due": self._eval_due,
            "history": self.history,
            "training_config": dataclasses.asdict(self.config),
            "run_info": self.run_info,
        }

    def save(self, path: str | None = None) -> str:
        """Write model, optimizer and trainer state atomically to `path` (default
        out_dir/checkpoint.safetensors, with a copy of the history in out_dir/history.json).

        Over MPI only rank 0 writes (the ranks hold the same state); the others return None.

        Raises:
            CheckpointWriteError (an OSError): the folder is full, read-only or missing; the
                previous checkpoint there is untouched.
        """
        if not self.world.is_main:
            return None
        in_out_dir = path is None
        if in_out_dir:
            if self.out_dir is None:
                raise ValueError("save: no path given and the trainer has no out_dir")
            os.makedirs(self.out_dir, exist_ok=True)
            path = os.path.join(self.out_dir, CHECKPOINT_NAME)
        save_checkpoint(path, self.model.state_dict(), flatten_state_dict(self.optimizer.state_dict()), {"trainer": self.state()})
        if in_out_dir:
            self._saved_step, self._saved_at = self.step, self._progress_marker()
            self._last_save_time = time.monotonic()
            # A convenience copy of the history, also replaced atomically (a failure here is not
            # worth stopping a run for: the checkpoint holds the history too).
            history_path = os.path.join(self.out_dir, "history.json")
            try:
                with open(history_path + ".tmp", "w") as file:
                    json.dump(self.history, file)
                os.replace(history_path + ".tmp", history_path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.remove(history_path + ".tmp")
        return path

    def _save_or_rescue(self) -> str:
        """`save()`; if out_dir cannot take it, save into a rescue folder and raise
        CheckpointSaveError saying where the weights are (or that no folder could take them)."""
        try:
            return self.save()
        except OSError as error:
            rescue_root = os.environ.get("MINIGPT_RESCUE_DIR") or os.path.join(tempfile.gettempdir(), "minigpt-rescue")
            rescue_dir = os.path.join(rescue_root, f"{os.path.basename(os.path.abspath(self.out_dir))}-step{self.step}-{os.getpid()}")
            kept = (f"the checkpoint of step {self._saved_step} there is intact" if self._saved_step is not None
                    else "no earlier checkpoint of this run is there")
            try:
                os.makedirs(rescue_dir, exist_ok=True)
                self.save(os.path.join(rescue_dir, CHECKPOINT_NAME))
            except OSError as rescue_error:
                raise CheckpointSaveError(
                    f"{error}; {kept}. The weights of step {self.step} could not be saved elsewhere either "
                    f"({rescue_error}): free some space or set MINIGPT_RESCUE_DIR to a folder with room"
                ) from error
            raise CheckpointSaveError(
                f"{error}; {kept}. The weights of step {self.step} were saved instead in {rescue_dir}: continue with "
                f"`minigpt train --resume {rescue_dir} --out {self.out_dir}` once there is room (or --out another folder)"
            ) from error

    def load(self, path: str) -> None:
        """Restore model weights, optimizer state and the trainer's position from a checkpoint.

        Raises:
            ValueError: the checkpoint does not fit this model or optimizer (from their
                load_state_dict), has no trainer state, or is damaged (a checksum differs).
        """
        model_state, optimizer_state, metadata = load_checkpoint(path)
        if "trainer" not in metadata:
            raise ValueError(f"{path!r} holds no trainer state (it is a weights-only checkpoint): cannot resume from it")
        state = metadata["trainer"]
        self.optimizer.zero_grad()  # gradients of an interrupted step must not leak into the next
        self.model.load_state_dict(model_state)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(unflatten_state_dict(*optimizer_state))
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.history = state["history"]
        self._set_position(state)
        self._eval_due = state.get("eval_due", False)
        self._mid_step = self._updating = self._half_updated = False
        self._tokens_this_step = 0
        in_out_dir = self.out_dir is not None and os.path.abspath(path) == os.path.abspath(os.path.join(self.out_dir, CHECKPOINT_NAME))
        self._saved_step = self.step if in_out_dir else None
        self._saved_at = self._progress_marker() if in_out_dir else None

    def _progress_marker(self) -> tuple:
        """What a checkpoint of this trainer depends on, besides the weights: step and evaluations."""
        return self.step, len(self.history["step"]), self._eval_due

    def plot(self) -> str | None:
        """Save `loss.png` in out_dir: losses against steps and tokens seen (book figure 5.12).

        Returns the file's path, or None when matplotlib is not installed (`pip install
        minigpt[plot]`) or nothing was recorded.
        """
        if self.out_dir is None or not self.history["step"] or not self.world.is_main:
            return None
        return plot_history(self.history, os.path.join(self.out_dir, "loss.png"))


def plot_history(history: dict, path: str) -> str | None:
    """Save a Trainer's loss plot (`plot_losses` against steps) to `path`, atomically.

    Args:
        history: a dict with lists "step", "tokens_seen", "train_loss", "val_loss".
        path: the image file to write (written to a temporary name, then renamed into place).

    Returns:
        `path`, or None when matplotlib is not installed (`pip install minigpt[plot]`).
    """
    return save_plot(path, lambda temporary: plot_losses(
        history["step"], history["tokens_seen"], history["train_loss"], history["val_loss"],
        path=temporary, x_label="Steps",
    ))


def _draw_seed(generator) -> int:
    """A seed in [0, 2**63) drawn from `generator` (an autograd.Generator or np.random.Generator)."""
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(2**63))
    return int(random_bits(generator, (), np.int64))


def _reseed(generator, stream: np.random.SeedSequence) -> None:
    """Re-seed `generator` in place from `stream` (every Dropout holding it follows)."""
    if isinstance(generator, np.random.Generator):
        # the same kind of bit generator keeps the state compatible
        generator.bit_generator.state = type(generator.bit_generator)(stream).state
    else:
        generator.manual_seed(int(stream.generate_state(1, np.uint64)[0]))


def _generator_state(generator) -> dict:
    """`generator`'s state as JSON-able data (`_set_generator_state` restores it)."""
    if isinstance(generator, Generator):
        return {"autograd_generator_state": generator.get_state().tobytes().hex()}
    return _jsonable(generator.bit_generator.state)


def _set_generator_state(generator, state: dict) -> None:
    if "autograd_generator_state" in state:
        generator.set_state(np.frombuffer(bytes.fromhex(state["autograd_generator_state"]), dtype=np.uint8).copy())
    else:
        generator.bit_generator.state = state


def _jsonable(value):
    """Convert NumPy scalars and arrays inside nested dicts/lists to plain Python values."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
