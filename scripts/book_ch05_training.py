"""The book's chapter-5 training run, on minigpt or on PyTorch, against the losses the book prints.

Chapter 5.2 of Raschka's "Build a Large Language Model (From Scratch)" trains GPT_CONFIG_124M
(context 256, dropout 0.1) on "the-verdict.txt" for 10 epochs with AdamW (lr 0.0004, weight
decay 0.1), batch 2, eval_freq 5, eval_iter 5, after `torch.manual_seed(123)`, and prints the
training and validation loss at every evaluation (ch05.ipynb's stored output, copied below as
facts). This script runs the same cells -- the book's code with only the imports changed for
minigpt (`--backend minigpt`), or the book's own package under PyTorch (`--backend torch`, in a
venv with torch 2.13 and the book's repository) -- prints each evaluation beside the book's line,
and says where the printed numbers first differ.

    python scripts/book_ch05_training.py --backend minigpt
    /tmp/torchref/bin/python scripts/book_ch05_training.py --backend torch --book /work/book

NOTE: the notebook's stored output was made on Apple's MPS device ("Using mps device."), whose
random streams are not the CPU's; PyTorch 2.13 on a CPU prints other losses from step 0 on, and
so does minigpt, which follows PyTorch's CPU generator.

Both runs draw the same random numbers (minigpt draws PyTorch's CPU streams: initial weights,
dropout masks and the shuffled batch order); they part only by float rounding (BLAS sums in
another order), which grows with every step.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

# ch05.ipynb (rasbt/LLMs-from-scratch, ch05/01_main-chapter-code), the output of the
# train_model_simple cell: (step, train loss, val loss) as printed, 3 decimals.
BOOK_LOSSES = [
    (0, 9.817, 9.924), (5, 8.066, 8.332), (10, 6.619, 7.042), (15, 6.046, 6.596),
    (20, 5.524, 6.508), (25, 5.369, 6.378), (30, 4.830, 6.263), (35, 4.586, 6.285),
    (40, 3.879, 6.130), (45, 3.530, 6.183), (50, 2.960, 6.123), (55, 2.832, 6.150),
    (60, 2.104, 6.133), (65, 1.691, 6.186), (70, 1.391, 6.230), (75, 1.059, 6.251),
    (80, 0.800, 6.278), (85, 0.569, 6.373),
]

GPT_CONFIG_124M = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
                   "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


def book_functions(backend: str, book: Path):
    """(torch, GPTModel, create_dataloader, train_model_simple, tokenizer) for the backend."""
    if backend == "torch":
        sys.path.insert(0, str(book / "pkg"))
        # minigpt's GPT-2 tokenizer gives tiktoken's ids (tests/test_tokenizer.py) and needs no
        # download: the book's package gets it under tiktoken's name.
        import types

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from minigpt.tokenizer import get_encoding

        tiktoken = sys.modules["tiktoken"] = types.SimpleNamespace(get_encoding=get_encoding)
        import torch
        from llms_from_scratch.ch02 import create_dataloader_v1
        from llms_from_scratch.ch04 import GPTModel
        from llms_from_scratch.ch05 import train_model_simple

        return torch, GPTModel, create_dataloader_v1, train_model_simple, tiktoken.get_encoding("gpt2")
    import autograd as torch
    from minigpt import nn  # noqa: F401 - attaches torch.optim, torch.nn
    from minigpt.data import create_dataloader
    from minigpt.model import GPTModel
    from minigpt.tokenizer import get_encoding
    from minigpt.train import train_model_simple

    return torch, GPTModel, create_dataloader, train_model_simple, get_encoding("gpt2")


class EvalPrinter:
    """Wraps stdout: passes the book's lines through, and after each "Ep .. (Step ..)" line prints
    the book's line and the elapsed time, recording the first step that differs."""

    def __init__(self, stream, start: float):
        self.stream, self.start, self.buffer = stream, start, ""
        self.first_difference = {"train": None, "val": None}
        self.rows = []

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.stream.write(line + "\n")
            match = re.match(r"Ep (\d+) \(Step (\d+)\): Train loss ([\d.]+), Val loss ([\d.]+)", line)
            if match:
                self._compare(int(match[2]), match[3], match[4])
            self.stream.flush()
        return len(text)

    def _compare(self, step: int, train: str, val: str) -> None:
        book = {row[0]: row for row in BOOK_LOSSES}.get(step)
        if book is None:
            return
        marks = []
        for name, ours, theirs in (("train", train, f"{book[1]:.3f}"), ("val", val, f"{book[2]:.3f}")):
            if ours != theirs and self.first_difference[name] is None:
                self.first_difference[name] = step
            marks.append("=" if ours == theirs else "!=")
        self.rows.append((step, train, val, book[1], book[2]))
        self.stream.write(f"    book:          Train loss {book[1]:.3f} {marks[0]}, Val loss {book[2]:.3f} {marks[1]}"
                          f"   [{time.time() - self.start:.0f} s]\n")

    def flush(self) -> None:
        self.stream.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("minigpt", "torch"), default="minigpt", help="which library runs the book's code")
    parser.add_argument("--book", type=Path, default=Path("/work/book"), help="the book's repository (rasbt/LLMs-from-scratch)")
    parser.add_argument("--text", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "the-verdict.txt",
                        help="the-verdict.txt (the book's pretraining text)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (the book: 10)")
    args = parser.parse_args(argv)
    torch, GPTModel, create_dataloader, train_model_simple, tokenizer = book_functions(args.backend, args.book)
    torch.set_num_threads(2) if hasattr(torch, "set_num_threads") else None

    # Section 5.1.3: the split and the loaders, as the book's cells make them.
    text_data = args.text.read_text(encoding="utf-8")
    split_idx = int(0.90 * len(text_data))
    torch.manual_seed(123)
    loader_options = dict(batch_size=2, max_length=GPT_CONFIG_124M["context_length"], stride=GPT_CONFIG_124M["context_length"], num_workers=0)
    if args.backend == "minigpt":
        loader_options["seed"] = None  # PyTorch's DataLoader: the order comes from the default generator
    train_loader = create_dataloader(text_data[:split_idx], drop_last=True, shuffle=True, **loader_options)
    val_loader = create_dataloader(text_data[split_idx:], drop_last=False, shuffle=False, **loader_options)

    # Section 5.2: the training cell.
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG_124M)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    start = time.time()
    printer = EvalPrinter(sys.stdout, start)
    sys.stdout = printer
    try:
        train_model_simple(model, train_loader, val_loader, optimizer, "cpu", num_epochs=args.epochs, eval_freq=5, eval_iter=5,
                           start_context="Every effort moves you", tokenizer=tokenizer)
    finally:
        sys.stdout = printer.stream
    print(f"{args.backend}: {time.time() - start:.0f} s; first printed difference from the book: "
          f"train loss at step {printer.first_difference['train']}, val loss at step {printer.first_difference['val']} "
          "(None: none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
