"""Appendix D, "Adding bells and whistles to the training loop", run in the book's style on minigpt.

Exact: the warmup length (27 steps), the learning-rate schedule of D.1 and D.2 step by step
(computed by the book's loops over the book's loader, set through `optimizer.param_groups`, and
equal to `minigpt.optim.warmup_cosine_lr`). In kind: gradient clipping lowers the largest
gradient and leaves the global norm at max_norm; the book's `train_model` (D.4) runs on minigpt and its
loss falls.
"""

import math

import numpy as np
import pytest

import autograd as torch
from minigpt import nn
from minigpt import tokenizer as tiktoken
from minigpt.data import create_dataloader
from minigpt.model import GPTModel
from minigpt.optim import warmup_cosine_lr
from minigpt.teaching import find_highest_gradient
from minigpt.train import calc_loss_batch, evaluate_model, generate_and_print_sample
from minigpt.train import train_model as minigpt_train_model
from tests.book.test_ch05 import GPT_CONFIG, book_loaders

n_epochs = 15
initial_lr = 0.0001
peak_lr = 0.01


def test_d_1_and_d_2_warmup_and_cosine_decay():
    train_loader, val_loader = book_loaders()
    torch.manual_seed(123)
    model = GPTModel({**GPT_CONFIG, "n_layers": 1, "emb_dim": 8})
    total_steps = len(train_loader) * n_epochs
    warmup_steps = int(0.2 * total_steps)
    assert warmup_steps == 27

    lr_increment = (peak_lr - initial_lr) / warmup_steps
    optimizer = torch.optim.AdamW(model.parameters(), weight_decay=0.1)
    min_lr = 0.1 * initial_lr
    track_lrs = []
    global_step = -1
    for epoch in range(n_epochs):
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            global_step += 1
            if global_step < warmup_steps:
                lr = initial_lr + global_step * lr_increment
            else:
                progress = (global_step - warmup_steps) / (total_steps - warmup_steps)
                lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            track_lrs.append(optimizer.param_groups[0]["lr"])

    assert len(track_lrs) == total_steps == 135
    assert track_lrs[0] == initial_lr and track_lrs[warmup_steps] == pytest.approx(peak_lr)
    assert max(track_lrs) == track_lrs[warmup_steps]
    assert track_lrs[-1] == pytest.approx(min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * 107 / 108)))
    assert all(a < b for a, b in zip(track_lrs[:warmup_steps], track_lrs[1:warmup_steps + 1]))  # warmup rises
    assert all(a >= b for a, b in zip(track_lrs[warmup_steps:], track_lrs[warmup_steps + 1:]))  # then decays
    schedule = [warmup_cosine_lr(step, total_steps=total_steps, warmup_steps=warmup_steps, peak_lr=peak_lr,
                                 initial_lr=initial_lr, min_lr=min_lr) for step in range(total_steps)]
    np.testing.assert_allclose(track_lrs, schedule, rtol=1e-12)


def test_d_3_gradient_clipping():
    train_loader, _ = book_loaders()
    input_batch, target_batch = next(iter(train_loader))
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG, init="pytorch")  # the book's model has PyTorch's layer init
    model.to("cpu")
    assert find_highest_gradient(model) is None  # no backward yet
    loss = calc_loss_batch(input_batch, target_batch, model, "cpu")
    loss.backward()
    before = find_highest_gradient(model)
    # The book's 124M model has a gradient norm above 1; this small one's is about 0.3, so
    # max_norm=1.0 leaves it alone (as PyTorch) and max_norm=0.1 shows the clipping.
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    assert norm < 1.0 and find_highest_gradient(model) == before
    norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.1)
    after = find_highest_gradient(model)
    assert norm > 0.1 and 0 < after < before  # the book: 0.0446 -> 0.0201
    assert after == pytest.approx(before * 0.1 / norm, rel=1e-4)
    total = math.sqrt(sum(float((np.asarray(p.grad, dtype=np.float64) ** 2).sum()) for p in model.parameters()))
    assert total == pytest.approx(0.1, rel=1e-4)
    # The book's own line reads param.grad.data.flatten(): minigpt's gradients allow it.
    param = next(model.parameters())
    assert param.grad.data.flatten().max() <= after


ORIG_BOOK_VERSION = False


def train_model(model, train_loader, val_loader, optimizer, device, n_epochs, eval_freq, eval_iter,
                start_context, tokenizer, warmup_steps, initial_lr=3e-05, min_lr=1e-6):
    """Section D.4's train_model, typed as the book."""
    train_losses, val_losses, track_tokens_seen, track_lrs = [], [], [], []
    tokens_seen, global_step = 0, -1
    peak_lr = optimizer.param_groups[0]["lr"]
    total_training_steps = len(train_loader) * n_epochs
    lr_increment = (peak_lr - initial_lr) / warmup_steps
    for epoch in range(n_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            global_step += 1
            if global_step < warmup_steps:
                lr = initial_lr + global_step * lr_increment
            else:
                progress = (global_step - warmup_steps) / (total_training_steps - warmup_steps)
                lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            track_lrs.append(lr)
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            if global_step >= warmup_steps:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            tokens_seen += input_batch.size  # the book: input_batch.numel() (a torch tensor's)
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch+1} (Iter {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen, track_lrs


def test_d_4_the_books_train_model_runs(capsys):
    text = open(__file__.replace("test_appendix_d.py", "../../minigpt/corpora/the-verdict.txt"), encoding="utf-8").read()
    torch.manual_seed(123)
    # A quarter of the book's training text (2 batches per epoch) keeps this test short.
    train_loader = create_dataloader(text[:5000], batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True)
    val_loader = create_dataloader(text[18431:], batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False)
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    model.to("cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.1)
    tokenizer = tiktoken.get_encoding("gpt2")
    train_losses, val_losses, tokens_seen, lrs = train_model(
        model, train_loader, val_loader, optimizer, "cpu", n_epochs=2, eval_freq=2, eval_iter=1,
        start_context="Every effort moves you", tokenizer=tokenizer, warmup_steps=1, initial_lr=1e-5, min_lr=1e-5,
    )
    assert len(lrs) == 4 and lrs[0] == 1e-5 and lrs[1] == pytest.approx(0.004)
    assert tokens_seen == [512, 1536]
    assert train_losses[-1] < train_losses[0]
    assert capsys.readouterr().out.startswith("Ep 1 (Iter 000000): Train loss ")


def test_d_4_minigpt_train_model_is_the_books(capsys):
    """minigpt.train.train_model (appendix D.4 in the library) gives the book-typed loop's numbers exactly."""
    text = open(__file__.replace("test_appendix_d.py", "../../minigpt/corpora/the-verdict.txt"), encoding="utf-8").read()
    results = []
    for loop in (train_model, minigpt_train_model):
        torch.manual_seed(123)
        train_loader = create_dataloader(text[:5000], batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True)
        val_loader = create_dataloader(text[18431:], batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False)
        torch.manual_seed(123)
        model = GPTModel(GPT_CONFIG)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.1)
        results.append(loop(model, train_loader, val_loader, optimizer, "cpu", n_epochs=2, eval_freq=1, eval_iter=1,
                            start_context="Every effort moves you", tokenizer=tiktoken.get_encoding("gpt2"),
                            warmup_steps=2, initial_lr=1e-4, min_lr=1e-5))
        results.append(capsys.readouterr().out)
    book, book_out, ours, ours_out = results
    assert ours == book and ours_out == book_out
    assert len(ours[3]) == 4 and ours[3][0] == 1e-4 and ours[3][2] == 0.004 and ours[3][3] == pytest.approx((0.004 + 1e-5) / 2)  # halfway down the cosine
