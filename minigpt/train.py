"""Pretraining: the loss of a batch, evaluation, the training loop and its plot (book ch. 5).

The book's chapter-5 code under its names: `calc_loss_batch`, `calc_loss_loader`,
`evaluate_model`, `generate_and_print_sample`, `train_model_simple`, `plot_losses`; what the
later chapters share with it (`average_over_batches`, `save_plot`) sits beside them. Appendix D's
loop, `train_model` (D.4), is here too; its pieces are `minigpt.optim.warmup_cosine_lr` and
`clip_grad_norm_` (D.1-D.3) and `minigpt.teaching.find_highest_gradient`. The loop a real run
needs, appendix D's with accumulation, checkpoints, exact resume, interrupts and MPI, is
`minigpt.trainer.Trainer`.

Shape letters: B batch, T tokens (context), V vocabulary.

References: Raschka, "Build a Large Language Model (From Scratch)", sections 5.1-5.2, appendix D.
"""

from __future__ import annotations

import os

import numpy as np

from autograd import Tensor, no_grad
from autograd import functional as F
from autograd.device import check_device
from minigpt.generate import generate, text_to_token_ids, token_ids_to_text
from minigpt.optim import clip_grad_norm_, warmup_cosine_lr

# --------------------------------------------------------------------------------------------
# The book's chapter-5 functions
# --------------------------------------------------------------------------------------------


def calc_loss_batch(input_batch, target_batch, model, device=None):
    """Mean cross-entropy of the model's next-token predictions for one batch (book section 5.1.3).

    Args:
        input_batch: int array or Tensor (B, T) of token ids.
        target_batch: int array or Tensor (B, T), the inputs shifted by one token.
        model: callable ids (B, T) -> logits (B, T, V).
        device: the book's device argument: "cpu", a CPU `autograd.device`, or None (the CPU);
            minigpt runs on the CPU, so it moves nothing.

    Returns:
        A 0-d float32 Tensor; call `.backward()` on it to get gradients.

    Raises:
        RuntimeError: a device other than the CPU.
    """
    check_device(device, "calc_loss_batch")
    logits = model(input_batch)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())  # (B*T, V), (B*T,): unambiguous even when T == V


def calc_loss_loader(data_loader, model, device=None, num_batches: int | None = None) -> float:
    """Average loss over the first `num_batches` batches of a loader (all when None; section 5.1.3).

    As the book: NaN for an empty loader; `num_batches` larger than the loader is reduced to its
    length. Runs without recording a graph. `device` as `calc_loss_batch`.

    Raises:
        ValueError: num_batches < 1. RuntimeError: a device other than the CPU.
    """
    check_device(device, "calc_loss_loader")
    with no_grad():
        return average_over_batches(
            data_loader,
            lambda input_batch, target_batch: calc_loss_batch(input_batch, target_batch, model, device).item(),
            num_batches,
        )


def average_over_batches(data_loader, batch_value, num_batches: int | None = None) -> float:
    """The mean of `batch_value(input_batch, target_batch)` (a float) over a loader's first batches.

    The loop of the book's `calc_loss_loader` (chapters 5 and 6), shared by the language-model and
    the classification losses: NaN for an empty loader, `num_batches` None means every batch and
    a larger number is reduced to the loader's length. The caller decides about `no_grad`.

    Raises:
        ValueError: num_batches < 1.
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1 or None, got {num_batches!r}")
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total += batch_value(input_batch, target_batch)
    return total / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter: int) -> tuple[float, float]:
    """Training and validation loss over `eval_iter` batches each, in eval mode (book listing 5.3).

    `device` as `calc_loss_batch` ("cpu" or None). Returns (train_loss, val_loss), floats.
    """
    model.eval()
    train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
    val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(model, tokenizer, device, start_context: str, max_new_tokens: int = 50) -> str:
    """Print (and return) a greedy continuation of `start_context` on one line (book listing 5.3).

    `device` as `calc_loss_batch` ("cpu" or None).
    """
    check_device(device, "generate_and_print_sample")
    context_size = model.pos_emb.weight.shape[0] if hasattr(model, "pos_emb") else model.cfg["context_length"]  # RoPE models: the config's
    encoded = text_to_token_ids(start_context, tokenizer)
    token_ids = generate(model, encoded, max_new_tokens=max_new_tokens, context_size=context_size)
    decoded = token_ids_to_text(token_ids, tokenizer)
    print(decoded.replace("\n", " "))  # compact print format, as the book
    return decoded


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs: int, eval_freq: int, eval_iter: int, start_context: str, tokenizer):
    """The book's pretraining loop (listing 5.3): epochs of batches, evaluation every `eval_freq` steps.

    Arguments in the book's order; `device` as `calc_loss_batch` ("cpu" or None). Prints the
    losses at each evaluation and a greedy sample after each epoch.

    Returns:
        (train_losses, val_losses, track_tokens_seen): lists, one entry per evaluation.
    """
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            tokens_seen += int(np.size(input_batch))
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen


# --------------------------------------------------------------------------------------------
# Appendix D: the loop with warmup, cosine decay and gradient clipping
# --------------------------------------------------------------------------------------------


def train_model(model, train_loader, val_loader, optimizer, device, n_epochs: int, eval_freq: int, eval_iter: int,
                start_context: str, tokenizer, warmup_steps: int, initial_lr: float = 3e-05, min_lr: float = 1e-6):
    """The book's appendix-D loop (section D.4): `train_model_simple` plus warmup, cosine decay and clipping.

    Before every step the learning rate of each `optimizer.param_groups` entry is set to
    `warmup_cosine_lr(global_step, ...)` (linear from `initial_lr` to the optimizer's own lr,
    the peak, over `warmup_steps`; then a cosine down to `min_lr` at the last step, D.1-D.2);
    from step `warmup_steps` on, the gradients are clipped to a global norm of 1.0 (D.3; from
    `warmup_steps` itself, as the book's corrected listing does, not one step later).

    Args:
        model, train_loader, val_loader, optimizer, device, eval_freq, eval_iter, start_context,
            tokenizer: as `train_model_simple`.
        n_epochs: passes over `train_loader` (>= 1); the run has len(train_loader) * n_epochs steps.
        warmup_steps: steps of linear warmup, fewer than the run's steps (the book: 20 % of them).
        initial_lr: learning rate at step 0 (the book: 3e-5).
        min_lr: learning rate at the last step of the cosine decay (the book: 1e-6).

    Returns:
        (train_losses, val_losses, track_tokens_seen, track_lrs): one entry per evaluation for the
        first three, one learning rate per step for the last.

    Raises:
        ValueError: from `warmup_cosine_lr`, naming the argument (warmup_steps not below the
            number of steps, a negative rate, min_lr above the optimizer's lr).

    References: Raschka, "Build a Large Language Model (From Scratch)", appendix D.1-D.4;
    Goyal et al. 2017 (linear warmup); Loshchilov & Hutter 2017 (cosine annealing);
    Pascanu et al. 2013 (gradient-norm clipping).
    """
    train_losses, val_losses, track_tokens_seen, track_lrs = [], [], [], []
    tokens_seen, global_step = 0, -1
    peak_lr = optimizer.param_groups[0]["lr"]
    total_steps = len(train_loader) * n_epochs
    for epoch in range(n_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            global_step += 1
            lr = warmup_cosine_lr(global_step, total_steps=total_steps, warmup_steps=warmup_steps,
                                  peak_lr=peak_lr, initial_lr=initial_lr, min_lr=min_lr)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            track_lrs.append(lr)
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            if global_step >= warmup_steps:  # after warmup: clip the global gradient norm (D.3)
                clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            tokens_seen += int(np.size(input_batch))
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Iter {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen, track_lrs


def plot_losses(epochs_seen, tokens_seen, train_losses, val_losses, path=None, x_label: str = "Epochs", *,
                label: str = "loss", second_x_label: str = "Tokens seen"):
    """Plot training and validation losses against epochs, with tokens seen on a second x-axis
    (the book's `plot_losses`, section 5.2, figure 5.12).

    Args:
        epochs_seen: x positions, one per evaluation (the book passes
            `torch.linspace(0, num_epochs, len(train_losses))`); a list, array or Tensor.
        tokens_seen: tokens seen at each evaluation (`train_model_simple`'s third result).
        train_losses, val_losses: the losses at each evaluation.
        path: where to save the figure (the book saves "loss-plot.pdf"); None saves nothing.
        x_label: the label of the lower x-axis.
        label, second_x_label: what the values are and what the upper axis counts; chapter 6's
            `plot_values` draws accuracies against examples seen with them.

    Returns:
        The matplotlib Figure (a notebook shows it; `plt.show()` opens it in a script).

    Raises:
        ImportError: matplotlib is not installed (`pip install minigpt[plot]`).
        ValueError: the four sequences do not have one length.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs_seen, tokens_seen, train_losses, val_losses = (
        np.asarray(values.data if isinstance(values, Tensor) else values)
        for values in (epochs_seen, tokens_seen, train_losses, val_losses)
    )
    lengths = {len(epochs_seen), len(tokens_seen), len(train_losses), len(val_losses)}
    if len(lengths) != 1:
        raise ValueError(
            "plot_losses: epochs_seen, tokens_seen, train_losses and val_losses must have one length, got "
            f"{len(epochs_seen)}, {len(tokens_seen)}, {len(train_losses)}, {len(val_losses)}"
        )
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(epochs_seen, train_losses, label=f"Training {label}")
    axis.plot(epochs_seen, val_losses, linestyle="-.", label=f"Validation {label}")
    axis.set_xlabel(x_label)
    axis.set_ylabel(label.capitalize())
    axis.legend(loc="upper right" if label == "loss" else "best")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs / steps only
    tokens_axis = axis.twiny()
    tokens_axis.plot(tokens_seen, train_losses, alpha=0)  # invisible: aligns the tokens ticks
    tokens_axis.set_xlabel(second_x_label)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
    return figure


def save_plot(path: str, draw) -> str | None:
    """Write a figure to `path` atomically: `draw(temporary_path)` saves it there and returns it.

    Uses matplotlib's Agg backend (the command line runs without a display); the figure is
    closed and the file renamed into place. Shared by the Trainer's plot and chapter 6's
    `plot_values`.

    Returns:
        `path`, or None when matplotlib is not installed (`pip install minigpt[plot]`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # the command line runs without a display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    temporary = path + ".tmp" + os.path.splitext(path)[1]
    figure = draw(temporary)
    plt.close(figure)
    os.replace(temporary, path)
    return path
