"""Fine-tuning a GPT for text classification: the book's chapter 6 (the SMS spam classifier).

The chapter's functions under the book's names, in the chapter's order:

    6.2  load_spam_data (the book downloads and reads it with pandas), create_balanced_dataset,
         random_split, write_csv / read_csv (the book's `to_csv` / `read_csv` of the splits)
    6.3  SpamDataset (pre-tokenised, right-padded texts and their class ids)
    6.5  replace_output_head (`model.out_head = nn.Linear(emb_dim, num_classes)`) and
         set_trainable (freeze everything but the last block, the final LayerNorm and the head)
    6.6  select_logits (which position is classified), calc_accuracy_loader, calc_loss_batch,
         calc_loss_loader
    6.7  evaluate_model, train_classifier_simple, plot_values
    6.8  classify_review (and classify_texts, the batched probabilities behind it)

Which position is classified (`pooling`): the book takes the logits of the last position
(`"last"`), which for a text shorter than the longest one is a padding token: the prediction then
depends on how much padding follows. The book's own ablation (ch06/02_bonus_additional-experiments,
row 16, `--trainable_token_pos flexible`) takes each row's last real token instead and reaches
98.33 % test accuracy instead of 95.00 %; that is `"last_non_padding"`, the default here. With
causal attention the logits of a position do not depend on what follows it, so with
`"last_non_padding"` appending more padding never changes a prediction.

Frozen layers stay cheap: a parameter with `requires_grad=False` records no graph, so the frozen
blocks below the last one run as plain NumPy (no activations kept, no backward), get no
gradient buffer, and `AdamW` keeps no moments for them (see `python scripts/bench.py finetune`).

Shape letters: B batch, T tokens, C channels (emb_dim), K classes.

References: Raschka, "Build a Large Language Model (From Scratch)", chapter 6 (listings 6.1-6.12);
Almeida, Gómez Hidalgo and Yamakami 2011, the SMS Spam Collection (UCI repository, CC BY 4.0).
"""

from __future__ import annotations

import csv
import io
import os
from importlib import resources

import numpy as np
from tqdm.auto import tqdm

from autograd import Tensor, no_grad
from autograd import functional as F
from autograd.device import check_device
from minigpt.data import Dataset
from minigpt.nn import Linear, Module
from minigpt.train import average_over_batches, plot_losses, save_plot

__all__ = [
    "SPAM_DATA_NAME",
    "POOLINGS",
    "TRAINABLE",
    "load_spam_data",
    "create_balanced_dataset",
    "random_split",
    "write_csv",
    "read_csv",
    "SpamDataset",
    "replace_output_head",
    "set_trainable",
    "last_token_positions",
    "select_logits",
    "calc_accuracy_loader",
    "calc_loss_batch",
    "calc_loss_loader",
    "evaluate_model",
    "train_classifier_simple",
    "plot_values",
    "classify_texts",
    "classify_review",
]

SPAM_DATA_NAME = "sms_spam_collection.tsv"  # bundled in minigpt/corpora (see its README)
POOLINGS = ("last_non_padding", "last")
TRAINABLE = ("last-block", "all", "head")
PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>, the book's padding token

# --------------------------------------------------------------------------------------------
# 6.2 The data: load, balance, split, CSV
# --------------------------------------------------------------------------------------------


def load_spam_data(path=None) -> list[tuple[str, str]]:
    """Every line of a label TAB text file as a (label, text) record; default the bundled SMS data.

    The bundled file is the UCI SMS Spam Collection (5,574 messages: 4,827 "ham", 747 "spam").
    Each line is split at its first tab; nothing else is interpreted. The book reads the file with
    `pandas.read_csv(sep="\\t")`, which treats double quotes as CSV quoting: a few messages that
    open a quote without closing it on the same line swallow the lines after them, so pandas sees
    5,572 rows (the spam count, 747, is the same). Here no quote processing happens, so every one
    of the 5,574 messages is its own record, quotes included. Any other label TAB text file (UTF-8)
    loads the same way: a UTF-8 byte-order mark at its start (as some editors write) is skipped,
    and spaces around a label are removed (" spam " is "spam"); blank lines are skipped.

    Args:
        path: a file path, or None for the bundled `sms_spam_collection.tsv`.

    Returns:
        A list of (label, text) string pairs, in file order.

    Raises:
        FileNotFoundError: no such file. ValueError: a non-empty line without a tab, an empty
            label, an empty text, no record at all (the message names the file and the 1-based
            line), or a file that is not UTF-8 (naming the line and byte).
    """
    if path is None:
        path = resources.files("minigpt").joinpath("corpora", SPAM_DATA_NAME)
    with open(path, "rb") as file:
        raw = file.read()
    try:
        content = raw.decode("utf-8-sig")  # -sig: skip a byte-order mark, else it sticks to the first label
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}, line {line}); convert it, "
                         "e.g. with `iconv -f latin1 -t utf-8`") from None
    records = []
    # newline="": split at \n, \r\n or \r as open() does, never at the other breaks str.splitlines knows.
    for number, line in enumerate(io.StringIO(content, newline=""), start=1):
        line = line.rstrip("\r\n")
        if not line:
            continue
        label, tab, text = line.partition("\t")
        label = label.strip()
        if not tab or not label:
            raise ValueError(f"{path}: line {number} is not 'label<TAB>text': {line[:60]!r}")
        if not text.strip():
            raise ValueError(f"{path}: line {number} has the label {label!r} but an empty text")
        records.append((label, text))
    if not records:
        raise ValueError(f"{path}: no 'label<TAB>text' lines in the file")
    return records


def create_balanced_dataset(data, seed: int = 123) -> list[tuple]:
    """Undersample every label to the count of the rarest one (book listing 6.2).

    For the spam data: all 747 "spam" records and 747 of the 4,827 "ham" ones drawn at random,
    1,494 in all. The draw is the book's: pandas' `df.sample(n, random_state=123)` takes the
    first n of `np.random.RandomState(123).permutation(len(df))`, so the same records come out in
    the same order.

    Args:
        data: (label, text) records. seed: seed of the draw (pandas' `random_state`).

    Returns:
        The kept records, grouped by label in sorted label order ("ham" first, as the book
        concatenates them): a sampled label in the sampled order, the rarest label whole, in
        file order.

    Raises:
        ValueError: empty data.
    """
    if len(data) == 0:
        raise ValueError("create_balanced_dataset: data is empty")
    labels = np.array([str(label) for label, _ in data])
    names, counts = np.unique(labels, return_counts=True)
    kept = []
    for name in names:  # sorted
        indices = np.flatnonzero(labels == name)
        if indices.size > counts.min():  # pandas' sample(n, random_state=seed): a fresh RandomState
            indices = indices[np.random.RandomState(seed).permutation(indices.size)[:counts.min()]]
        kept.extend(data[int(index)] for index in indices)
    return kept


def random_split(data, train_frac: float = 0.7, validation_frac: float = 0.1, seed: int = 123):
    """Shuffle and cut into training, validation and test parts (book listing 6.3).

    The sizes follow the book: int(n * train_frac) records for training, int(n * validation_frac)
    for validation, the rest for testing (1,494 balanced messages -> 1,045 / 149 / 300).

    Args:
        data: a sequence of records. train_frac, validation_frac: fractions in [0, 1] with sum
            <= 1. seed: seed of the shuffle: the book's `df.sample(frac=1, random_state=seed)`,
            which is `np.random.RandomState(seed).permutation(len(df))`, so the book's split.

    Returns:
        (train, validation, test): three lists of records.

    Raises:
        ValueError: fractions out of range.
    """
    for name, value in (("train_frac", train_frac), ("validation_frac", validation_frac)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"random_split: {name} must be in [0, 1], got {value!r}")
    if train_frac + validation_frac > 1.0:
        raise ValueError(f"random_split: train_frac + validation_frac must be <= 1, got {train_frac} + {validation_frac}")
    order = np.random.RandomState(seed).permutation(len(data))  # pandas' sample(frac=1) (legacy MT19937)
    shuffled = [data[int(index)] for index in order]
    train_end = int(len(data) * train_frac)
    validation_end = train_end + int(len(data) * validation_frac)
    return shuffled[:train_end], shuffled[train_end:validation_end], shuffled[validation_end:]


def write_csv(data, path) -> str:
    """Write (label, text) records as a CSV file with the header `Label,Text`, as the book's
    `train_df.to_csv("train.csv", index=None)` does; returns the path."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Label", "Text"])
        writer.writerows(data)
    return str(path)


def read_csv(path) -> list[tuple[str, str]]:
    """Read the (label, text) records of a CSV file written by `write_csv` (header `Label,Text`).

    Labels come back as strings (an int label written as 1 reads as "1"; `SpamDataset` accepts both).

    Raises:
        ValueError: the header is not `Label,Text`, or a row has not two fields.
    """
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    if not rows or rows[0] != ["Label", "Text"]:
        raise ValueError(f"{path}: expected a CSV file with the header 'Label,Text', got {rows[0] if rows else 'nothing'}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ValueError(f"{path}: row {number} has {len(row)} fields, expected 2 (Label, Text)")
    return [(label, text) for label, text in rows[1:]]


# --------------------------------------------------------------------------------------------
# 6.3 The dataset
# --------------------------------------------------------------------------------------------


class SpamDataset(Dataset):
    """Texts tokenised once, right-padded to one length, with their class ids (book listing 6.4).

    Args:
        data: (label, text) records, or the path of a CSV file written by `write_csv` (the book
            passes `csv_file="train.csv"`; that keyword works too).
        tokenizer: anything with `encode(text) -> list[int]` (`get_encoding("gpt2")`).
        max_length: tokens per example. None: the longest text of `data` (the book's training set
            gives 120). A text longer than an explicit `max_length` is cut to it, as the book does
            for the validation and test sets (`num_truncated` counts them).
        pad_token_id: the id appended after each text (GPT-2's <|endoftext|>, 50256).
        context_length: the model's context, `model.pos_emb.weight.shape[0]` (the number of
            positions, the table's first axis); None skips the check. A `max_length` (given or
            found) above it is an error unless `truncation=True`, which cuts to the context.
        truncation: allow cutting texts to the model's context (see context_length).
        label_names: the class names in class-id order, e.g. ("ham", "spam"). None: labels that
            are ints (or digit strings, as read back from CSV) are the ids; other labels get ids in
            sorted order of this data's names. Pass the training set's `label_names` to the
            validation and test sets so that the ids agree.
        csv_file: the book's name for `data`.

    Attributes:
        encoded_texts: list of lists of ints, each `max_length` long. labels: int64 array (N,).
        max_length, label_names, num_truncated (texts cut to max_length).

    Items: `dataset[i]` is (int64 Tensor (max_length,), int64 scalar Tensor), as the book's
    `torch.tensor`s; a DataLoader stacks them into Tensors (B, max_length) and (B,).

    Raises:
        ValueError: empty data, max_length < 1, a text longer than the context without
            truncation, a label not in label_names, or a class id < 0.
    """

    def __init__(self, data=None, tokenizer=None, max_length: int | None = None, pad_token_id: int = PAD_TOKEN_ID, *,
                 context_length: int | None = None, truncation: bool = False, label_names=None, csv_file=None):
        if csv_file is not None:
            if data is not None:
                raise ValueError("SpamDataset: give data or csv_file (the book's name for it), not both")
            data = csv_file
        if data is None or tokenizer is None:
            raise ValueError("SpamDataset: data (records or a CSV path) and tokenizer are required")
        if isinstance(data, (str, os.PathLike)):
            data = read_csv(data)
        if len(data) == 0:
            raise ValueError("SpamDataset: data is empty")
        self.data = list(data)
        self.label_names, self.labels = _class_ids([label for label, _ in self.data], label_names)
        self.encoded_texts = [list(tokenizer.encode(text)) for _, text in self.data]
        longest = max(len(ids) for ids in self.encoded_texts)
        if max_length is None:
            max_length = longest
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
            raise ValueError(f"SpamDataset: max_length must be a positive integer or None, got {max_length!r}")
        if context_length is not None and max_length > context_length:
            if not truncation:
                raise ValueError(
                    f"SpamDataset: max_length {max_length} (the longest text has {longest} tokens) is more than the "
                    f"model's context of {context_length} tokens; pass truncation=True to cut texts to it"
                )
            max_length = context_length
        self.max_length = int(max_length)
        self.pad_token_id = pad_token_id
        self.num_truncated = sum(len(ids) > self.max_length for ids in self.encoded_texts)
        self.encoded_texts = [
            ids[:self.max_length] + [pad_token_id] * (self.max_length - min(len(ids), self.max_length))
            for ids in self.encoded_texts
        ]
        self._inputs = np.array(self.encoded_texts, dtype=np.int64).reshape(len(self.data), self.max_length)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return Tensor(self._inputs[index]), Tensor(self.labels[index])  # the book's torch.tensor pair

    def get_batch(self, indices):
        """(inputs (B, max_length), labels (B,)) for the given example indices: int64 Tensors, as
        the book's DataLoader stacks its tensors (so the book's `input_batch.to(device)` works)."""
        return Tensor(self._inputs[indices]), Tensor(self.labels[indices])

    def _longest_encoded_length(self) -> int:
        """The book's helper: the longest encoded text (after any truncation)."""
        return self.max_length


def _class_ids(labels, label_names) -> tuple[tuple, np.ndarray]:
    """(label_names, int64 class ids) of a list of labels; see SpamDataset's `label_names`."""
    def is_int(label):
        return isinstance(label, (int, np.integer)) and not isinstance(label, bool) or (isinstance(label, str) and label.isdigit())

    if label_names is None:
        if all(is_int(label) for label in labels):
            ids = np.array([int(label) for label in labels], dtype=np.int64)
            return tuple(str(i) for i in range(int(ids.max()) + 1)), ids
        label_names = sorted({str(label) for label in labels})
    label_names = tuple(str(name) for name in label_names)
    index = {name: i for i, name in enumerate(label_names)}
    ids = []
    for label in labels:
        if is_int(label) and str(label) not in index:
            if not 0 <= int(label) < len(label_names):
                raise ValueError(f"SpamDataset: class id {label} is outside [0, {len(label_names)}) of label_names {label_names}")
            ids.append(int(label))
        elif str(label) in index:
            ids.append(index[str(label)])
        else:
            raise ValueError(f"SpamDataset: label {label!r} is not one of label_names {label_names}")
    return label_names, np.array(ids, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# 6.5 The model: a classification head, frozen layers
# --------------------------------------------------------------------------------------------


def replace_output_head(model, num_classes: int = 2, rng=123) -> Module:
    """Replace `model.out_head` by `Linear(emb_dim, num_classes)` (with a bias, as the book's
    `torch.nn.Linear(in_features=emb_dim, out_features=num_classes)`, and PyTorch's initialisation
    U(-1/sqrt(emb_dim), 1/sqrt(emb_dim)) drawn from `rng`); returns the model.

    The model then maps ids (B, T) to class logits (B, T, K) at every position. A tied head
    (GPT-2) is untied by this: the token embedding keeps its weights.

    Raises:
        ValueError: num_classes < 2.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"replace_output_head: num_classes must be an integer >= 2, got {num_classes!r}")
    emb_dim = model.pos_emb.weight.shape[1]  # (context_length, C): the second axis is C
    model.out_head = Linear(emb_dim, int(num_classes), bias=True, rng=rng)
    return model


def set_trainable(model, trainable: str = "last-block") -> Module:
    """Freeze the model for fine-tuning (book section 6.5); returns the model.

    - "last-block" (the book's recipe): everything frozen but the last transformer block, the
      final LayerNorm and the output head.
    - "head": only the output head trains.
    - "all": every parameter trains.

    Frozen parameters get `requires_grad=False` (`Module.requires_grad_(False)`), so no graph,
    gradient or optimizer state is made for them.

    Raises:
        ValueError: an unknown `trainable`.
    """
    if trainable not in TRAINABLE:
        raise ValueError(f"set_trainable: trainable must be one of {TRAINABLE}, got {trainable!r}")
    model.requires_grad_(trainable == "all")
    if trainable == "last-block":
        model.trf_blocks[-1].requires_grad_(True)
        model.final_norm.requires_grad_(True)
    model.out_head.requires_grad_(True)
    return model


# --------------------------------------------------------------------------------------------
# 6.6 Which position is classified, accuracy and loss
# --------------------------------------------------------------------------------------------


def last_token_positions(input_batch, pad_token_id: int = PAD_TOKEN_ID) -> np.ndarray:
    """The index of each row's last token that is not `pad_token_id`, int64 (B,); 0 for a row of padding.

    The book's ablation computes `mask.sum(dim=1) - 1`, which is the same for right-padded rows;
    this looks for the last real token, so it also holds when a text contains the pad id.
    """
    ids = _array(input_batch)
    real = ids != pad_token_id  # (B, T)
    last_from_end = np.argmax(real[:, ::-1], axis=1)  # first real token seen from the right
    positions = ids.shape[1] - 1 - last_from_end
    return np.where(real.any(axis=1), positions, 0).astype(np.int64)


def select_logits(logits: Tensor, input_batch, pooling: str = "last_non_padding", pad_token_id: int = PAD_TOKEN_ID) -> Tensor:
    """The logits of the classified position of each row: (B, T, K) -> (B, K) (book section 6.6).

    Args:
        logits: the model's output (B, T, K). input_batch: the ids (B, T) it came from.
        pooling: "last_non_padding" (each row's last real token; the book's ablation, row 16) or
            "last" (position T - 1, the book's chapter: padding for texts shorter than T).

    Raises:
        ValueError: unknown pooling.
    """
    if pooling == "last":
        return logits[:, -1, :]
    if pooling == "last_non_padding":
        positions = last_token_positions(input_batch, pad_token_id)
        return logits[np.arange(positions.shape[0]), positions]  # (B, K)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def calc_accuracy_loader(data_loader, model, device=None, num_batches: int | None = None, *,
                         pooling: str = "last_non_padding", pad_token_id: int = PAD_TOKEN_ID) -> float:
    """The fraction of correctly classified examples in the first `num_batches` batches (listing 6.8).

    Puts the model in eval mode (as the book; it does not switch back) and records no graph.
    `device` is the book's argument ("cpu", a CPU `torch.device`, or None). NaN for an empty loader.

    Raises:
        ValueError: num_batches < 1. RuntimeError: a device other than the CPU.
    """
    check_device(device, "calc_accuracy_loader")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1 or None, got {num_batches!r}")
    model.eval()
    correct, examples = 0, 0
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    with no_grad():
        for i, (input_batch, target_batch) in enumerate(data_loader):
            if i >= num_batches:
                break
            logits = select_logits(model(input_batch), input_batch, pooling, pad_token_id)  # (B, K)
            predicted = np.argmax(logits.data, axis=-1)
            correct += int(np.sum(predicted == _array(target_batch)))
            examples += predicted.shape[0]
    return correct / examples if examples else float("nan")


def calc_loss_batch(input_batch, target_batch, model, device=None, *, pooling: str = "last_non_padding",
                    pad_token_id: int = PAD_TOKEN_ID) -> Tensor:
    """Mean cross-entropy of the classified position's logits against the class ids (listing 6.9).

    Args:
        input_batch: int ids (B, T). target_batch: int class ids (B,). model: ids -> (B, T, K).

    Returns:
        A 0-d float32 Tensor.
    """
    check_device(device, "calc_loss_batch")
    logits = select_logits(model(input_batch), input_batch, pooling, pad_token_id)  # (B, K)
    return F.cross_entropy(logits, _array(target_batch))


def calc_loss_loader(data_loader, model, device=None, num_batches: int | None = None, *,
                     pooling: str = "last_non_padding", pad_token_id: int = PAD_TOKEN_ID) -> float:
    """Average classification loss over the first `num_batches` batches (all when None), no graph.

    The chapter-5 loop (`minigpt.train.average_over_batches`) over `calc_loss_batch`; NaN for an
    empty loader.
    """
    with no_grad():
        return average_over_batches(
            data_loader,
            lambda inputs, targets: calc_loss_batch(inputs, targets, model, device, pooling=pooling, pad_token_id=pad_token_id).item(),
            num_batches,
        )


# --------------------------------------------------------------------------------------------
# 6.7 Training
# --------------------------------------------------------------------------------------------


def evaluate_model(model, train_loader, val_loader, device=None, eval_iter: int = 5, *,
                   pooling: str = "last_non_padding", pad_token_id: int = PAD_TOKEN_ID) -> tuple[float, float]:
    """Training and validation loss over `eval_iter` batches each, in eval mode (as in chapter 5)."""
    model.eval()
    options = dict(pooling=pooling, pad_token_id=pad_token_id)
    train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter, **options)
    val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter, **options)
    model.train()
    return train_loss, val_loss


def train_classifier_simple(model, train_loader, val_loader, optimizer, device=None, num_epochs: int = 5,
                            eval_freq: int = 50, eval_iter: int = 5, *, pooling: str = "last_non_padding",
                            pad_token_id: int = PAD_TOKEN_ID, progress: bool = False, accuracy_batches="eval_iter",
                            on_epoch_end=None):
    """The book's fine-tuning loop (listing 6.10): steps over batches, losses every `eval_freq`
    steps, training and validation accuracy after every epoch.

    As the book, it prints `Ep 1 (Step 000000): Train loss ..., Val loss ...` at each evaluation
    and `Training accuracy: ..% | Validation accuracy: ..%` after each epoch, and counts examples
    seen instead of tokens.

    Args:
        model, train_loader, val_loader, optimizer: as the book. device: "cpu", a CPU device or None.
        num_epochs: passes over train_loader. eval_freq: steps between loss estimates (the first
            at step 0). eval_iter: batches per loss estimate.
        pooling, pad_token_id: see `select_logits`.
        progress: show a tqdm progress bar over the steps (the prints go through it).
        accuracy_batches: batches per epoch-end accuracy; "eval_iter" as the book (an estimate
            on eval_iter batches), None for the whole loaders.
        on_epoch_end: optional `f(epoch)` called after each epoch's accuracies (checkpoints).

    Returns:
        (train_losses, val_losses, train_accs, val_accs, examples_seen): the lists of the loss
        estimates and of the per-epoch accuracies (fractions), and the examples trained on.
    """
    check_device(device, "train_classifier_simple")
    options = dict(pooling=pooling, pad_token_id=pad_token_id)
    accuracy_batches = eval_iter if accuracy_batches == "eval_iter" else accuracy_batches
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1
    bar = tqdm(total=num_epochs * len(train_loader), desc="fine-tune", unit="step", disable=not progress, dynamic_ncols=True)
    say = tqdm.write if progress else print
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device, **options)
            loss.backward()
            optimizer.step()
            examples_seen += input_batch.shape[0]  # examples, not tokens, as the book
            global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter, **options)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                say(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=accuracy_batches, **options)
        val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=accuracy_batches, **options)
        say(f"Training accuracy: {train_accuracy * 100:.2f}% | Validation accuracy: {val_accuracy * 100:.2f}%")
        train_accs.append(train_accuracy)
        val_accs.append(val_accuracy)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    return train_losses, val_losses, train_accs, val_accs, examples_seen


def plot_values(epochs_seen, examples_seen, train_values, val_values, label: str = "loss", path=None) -> str | None:
    """Plot training and validation values against epochs, with examples seen on a second axis
    (book section 6.7, figures 6.16 and 6.17), saved as a PNG.

    Args:
        epochs_seen, examples_seen: the x positions of the points (the book passes
            `torch.linspace(0, num_epochs, n)` and `torch.linspace(0, examples_seen, n)`); lists,
            arrays or Tensors.
        train_values, val_values: the curves (losses or accuracies).
        label: "loss" or "accuracy": the legend and the y-axis title.
        path: where to save; default f"{label}-plot.png" (the book writes a PDF).

    Returns:
        The path, or None when matplotlib is not installed (`pip install minigpt[plot]`).
    """
    path = f"{label}-plot.png" if path is None else str(path)
    return save_plot(path, lambda temporary: plot_losses(
        epochs_seen, examples_seen, train_values, val_values, path=temporary, x_label="Epochs",
        label=label, second_x_label="Examples seen",
    ))


# --------------------------------------------------------------------------------------------
# 6.8 Using the classifier
# --------------------------------------------------------------------------------------------


def classify_texts(texts, model, tokenizer, max_length: int | None = None, pad_token_id: int = PAD_TOKEN_ID, *,
                   pooling: str = "last_non_padding", truncation: bool = False, batch_size: int = 16) -> np.ndarray:
    """Class probabilities of texts, float (N, K): softmax of the classified position's logits.

    Each text is tokenised, cut to `max_length` when it is given (the book passes the training
    set's longest length) and right-padded to it. Without max_length each text keeps its own
    length (which with "last_non_padding" gives the same probabilities). Puts the model in eval
    mode; no graph is recorded.

    Raises:
        TypeError: `texts` is one str (give a list of strings; `classify_review` takes one text),
            or an item is not a str.
        ValueError: a text longer than the model's context (`model.pos_emb.weight.shape[0]`
            positions) without `truncation=True`, an empty text, or max_length above the context.
    """
    if isinstance(texts, str):
        raise TypeError(f"classify_texts: texts must be a list of strings, got one str ({texts[:40]!r}); "
                        "pass [text], or use classify_review for one text")
    context_length = model.pos_emb.weight.shape[0]  # positions are the table's first axis
    if max_length is not None and max_length > context_length:
        raise ValueError(f"max_length {max_length} is more than the model's context of {context_length} tokens")
    limit = context_length if max_length is None else max_length
    encoded = []
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"classify_texts: texts[{number}] must be a str, got {type(text).__name__}")
        ids = list(tokenizer.encode(text))
        if not ids:
            raise ValueError(f"text {number} is empty: nothing to classify")
        if len(ids) > context_length and not truncation:
            raise ValueError(
                f"text {number} has {len(ids)} tokens, more than the model's context of {context_length}; "
                "pass truncation=True (--truncate) to classify its first tokens"
            )
        encoded.append(ids[:limit])
    model.eval()
    probabilities = []
    with no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max_length if max_length is not None else max(len(ids) for ids in chunk)
            batch = np.array([ids + [pad_token_id] * (width - len(ids)) for ids in chunk], dtype=np.int64)  # (B, T)
            logits = select_logits(model(batch), batch, pooling, pad_token_id)  # (B, K)
            probabilities.append(F.softmax(logits, dim=-1).data)
    return np.concatenate(probabilities) if probabilities else np.zeros((0, model.out_head.weight.shape[0]), np.float32)


def classify_review(text: str, model, tokenizer, device=None, max_length: int | None = None,
                    pad_token_id: int = PAD_TOKEN_ID, *, pooling: str = "last_non_padding",
                    label_names=("not spam", "spam")) -> str:
    """The predicted label of one text (book listing 6.12): "spam" or "not spam" for the spam model.

    Args:
        text: the message. model, tokenizer: the fine-tuned model and its tokenizer.
        device: the book's argument: "cpu", a CPU device or None. max_length: pad (and cut) to this many tokens,
            as in training (the book passes `train_dataset.max_length`); None keeps the text's length.
        label_names: the names of the class ids (the book returns "spam" for 1, "not spam" for 0).

    Raises:
        TypeError: `text` is not a str (classify_texts takes a list of texts).
        ValueError: see `classify_texts`.
    """
    check_device(device, "classify_review")
    if not isinstance(text, str):
        raise TypeError(f"classify_review: text must be one str, got {type(text).__name__}; use classify_texts for a list of texts")
    probabilities = classify_texts([text], model, tokenizer, max_length, pad_token_id, pooling=pooling,
                                   truncation=max_length is not None)
    return label_names[int(np.argmax(probabilities[0]))]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _array(batch) -> np.ndarray:
    """A loader's batch as an np.ndarray (it may be a Tensor)."""
    return batch.data if isinstance(batch, Tensor) else np.asarray(batch)
