"""`minigpt finetune TASK`: fine-tune a GPT for a task. Tasks: `classify` (book ch. 6), `instruct` (ch. 7), `dpo` (ch. 7 bonus).

    minigpt finetune classify --model gpt2-small          # the book's chapter 6: the spam classifier
    minigpt finetune classify --checkpoint runs/sms       # from a model pretrained with `minigpt train`
    minigpt finetune classify --init random --preset tiny --trainable all --lr 5e-4
    minigpt finetune instruct --model gpt2-medium         # the book's chapter 7: instruction fine-tuning
    minigpt finetune classify --model gpt2-small --lora 16 --lr 8e-4   # appendix E: LoRA
    minigpt finetune dpo --checkpoint runs/instruct       # preference tuning (minigpt/cli/finetune_dpo.py)

Each task is a sub-subcommand: a function pair `_add_<task>_parser(tasks)` / `_run_<task>(args)`
listed in `TASKS` (chapter 7: `finetune_instruct.py`; its DPO bonus: `finetune_dpo.py`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from minigpt.cli.common import fail, kernels_note, load_run_checkpoint, make_tokenizer, save_after_interrupt
from minigpt.cli.finetune_dpo import add_dpo_parser, run_dpo
from minigpt.cli.finetune_instruct import add_instruct_parser, run_instruct
from minigpt.cli.finetune_options import (add_output_arguments, add_training_arguments, check_training_arguments,
                                          load_base_model)
from minigpt.cli.lora_options import add_lora_arguments, apply_lora
from minigpt.interrupts import StopBetweenSteps

COMMAND = "finetune classify"
CLASSIFIER_KEY = "classifier"  # the checkpoint metadata entry that `minigpt classify` reads


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a GPT for a task (classify: book ch. 6)",
                                   description="Fine-tune a pretrained (or random) GPT for a task.")
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for add_task_parser, _ in TASKS.values():
        add_task_parser(tasks)


def run(args) -> int:
    """Run `minigpt finetune TASK` with parsed arguments."""
    return TASKS[args.task][1](args)


# --------------------------------------------------------------------------------------------
# classify (chapter 6)
# --------------------------------------------------------------------------------------------


def _add_classify_parser(tasks) -> None:
    parser = tasks.add_parser(
        "classify", help="turn a GPT into a text classifier (default: the book's spam classifier)",
        description="Replace the GPT's output head by a linear layer over the classes, freeze all but the last "
        "block (the book's chapter 6), fine-tune on label<TAB>text data, and save a checkpoint that "
        "`minigpt classify` uses. Defaults are the book's: AdamW lr 5e-5, weight decay 0.1, 5 epochs, batch 8.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="pretrained weights: gpt2-small (default), gpt2-medium, gpt2-large, gpt2-xl "
                        "(downloaded once), or a Hugging Face GPT-2 directory / .safetensors file")
    source.add_argument("--checkpoint", metavar="DIR", help="a model pretrained with `minigpt train` (its run directory)")
    source.add_argument("--init", choices=("random",), help="start from random weights (the book's ablation row 10)")
    parser.add_argument("--preset", default="gpt2-small", help="model shape for --init random (a preset of `minigpt "
                        "train`: gpt2-small, tiny, ...; default gpt2-small)")
    parser.add_argument("--emb-dim", type=int, help="with --init random: channels per token (overrides the preset)")
    parser.add_argument("--n-layers", type=int, help="with --init random: transformer blocks (overrides the preset)")
    parser.add_argument("--n-heads", type=int, help="with --init random: attention heads (overrides the preset)")
    parser.add_argument("--context-length", type=int, help="with --init random: positions of the model (overrides the preset)")
    parser.add_argument("--data", default=None, help="label<TAB>text file, one example per line (default: the bundled "
                        "UCI SMS Spam Collection, 5,574 messages)")
    parser.add_argument("--no-balance", action="store_true", help="keep every example (default: undersample every "
                        "label to the rarest one's count, as the book)")
    parser.add_argument("--train-frac", type=float, default=0.7, help="fraction of the examples for training")
    parser.add_argument("--validation-frac", type=float, default=0.1, help="fraction for validation (the rest tests)")
    parser.add_argument("--max-length", type=int, help="tokens per example (default: the longest training text)")
    parser.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context instead of failing")
    parser.add_argument("--pad-token-id", type=int, help="the token appended to shorter texts (default: the "
                        "tokenizer's <|endoftext|>, 50256, as the book)")
    parser.add_argument("--trainable", choices=("last-block", "all", "head"), default="last-block",
                        help="what trains: last-block (the last transformer block, final LayerNorm and head: the "
                        "book's recipe), all, or head; --lora replaces it")
    add_lora_arguments(parser)  # appendix E: e.g. --lora 16 --lr 8e-4
    parser.add_argument("--pooling", choices=("last_non_padding", "last"), default="last_non_padding",
                        help="which position is classified: each text's last real token (default; the book's "
                        "ablation) or the last position (the book's chapter, often a padding token)")
    add_training_arguments(parser, epochs=5, batch_size=8, lr=5e-5, weight_decay=0.1, eval_every=50, eval_batches=5,
                           items="examples", estimates="the train and validation loss (and, per epoch, accuracy)",
                           source="the book")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="dropout probability while fine-tuning (the book: 0)")
    add_output_arguments(parser, seeds="the balancing, the split, the head and the shuffling", out="runs/classify",
                         contents="checkpoint, splits, history, plots")


def _check_arguments(args) -> None:
    check_training_arguments(COMMAND, args)
    if args.init is None and any(value is not None for value in (args.emb_dim, args.n_layers, args.n_heads, args.context_length)):
        fail(COMMAND, "--emb-dim, --n-layers, --n-heads and --context-length set the shape of a new model: use them with --init random")


def _run_classify(args) -> int:
    from minigpt.data import DataLoader
    from minigpt.finetune import classification as cls
    from minigpt.optim import AdamW

    _check_arguments(args)
    records, data, (train, validation, test) = _split_data(args)
    model, tokenizer, source = load_base_model(args, COMMAND)
    pad_token_id, train_set, validation_set, test_set = _datasets(args, model, tokenizer, train, validation, test)

    cls.replace_output_head(model, len(train_set.label_names), rng=args.seed)
    cls.set_trainable(model, args.trainable)
    if apply_lora(COMMAND, model, args, rng=args.seed):  # appendix E: every Linear, the new head included
        args.trainable = f"LoRA rank {args.lora}"
    # Only trainable parameters go to the optimizer: frozen ones get no moments at all.
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=args.weight_decay)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=args.seed)
    validation_loader = DataLoader(validation_set, batch_size=args.batch_size)
    test_loader = DataLoader(test_set, batch_size=args.batch_size) if test_set else None

    os.makedirs(args.out, exist_ok=True)
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        cls.write_csv(part, os.path.join(args.out, f"{name}.csv"))  # the book writes the splits too
    print(f"model: {source}, {model.num_parameters():,} parameters, {model.num_parameters(trainable_only=True):,} "
          f"trainable ({args.trainable}) | classes: {', '.join(train_set.label_names)} | pooling: {args.pooling}{kernels_note(args)}")
    print(f"data: {args.data or cls.SPAM_DATA_NAME}: {len(records):,} examples, {len(data):,} used -> "
          f"{len(train)} train / {len(validation)} validation / {len(test)} test; {train_set.max_length} tokens per "
          f"example ({validation_set.num_truncated + (test_set.num_truncated if test_set else 0)} validation/test texts cut to it)")

    # What `minigpt classify` needs to use the model (the accuracy is added after training).
    classifier = {"label_names": list(train_set.label_names), "pooling": args.pooling, "max_length": train_set.max_length,
                  "pad_token_id": int(pad_token_id), "num_classes": len(train_set.label_names),
                  "model_config": model.cfg.to_dict(), "tokenizer": {"name": "gpt2"}, "trainable": args.trainable,
                  "source": source}
    started = time.perf_counter()
    stops = StopBetweenSteps(optimizer)  # Ctrl-C / SIGTERM: stop after a complete step, then save its weights
    try:
        with stops:
            train_losses, val_losses, train_accs, val_accs, examples_seen = cls.train_classifier_simple(
                model, train_loader, validation_loader, optimizer, None, num_epochs=args.epochs, eval_freq=args.eval_every,
                eval_iter=args.eval_batches, pooling=args.pooling, pad_token_id=pad_token_id,
                # The bar only on a terminal, as `minigpt train` and the other fine-tunings: not in a log file.
                progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        total_steps = args.epochs * len(train_loader)
        interrupted = {**classifier, "interrupted_after_step": stops.completed_steps, "total_steps": total_steps}
        return save_after_interrupt(COMMAND, stops.requests.signal, stops.completed_steps, total_steps,
                                    lambda: _save_weights(args.out, model, interrupted, args.lora is not None),
                                    f"minigpt classify --checkpoint {args.out} TEXT...")
    minutes = (time.perf_counter() - started) / 60
    print(f"Training completed in {minutes:.2f} minutes.")

    accuracy = _accuracies(args, model, pad_token_id, train_loader, validation_loader, test_loader)

    history = {"train_losses": train_losses, "val_losses": val_losses, "train_accs": train_accs, "val_accs": val_accs,
               "examples_seen": examples_seen, "epochs": args.epochs, "minutes": minutes}
    _save(args.out, model, {**classifier, "accuracy": accuracy}, history, args.lora is not None)
    return 0


def _split_data(args):
    """(records, the examples used, (train, validation, test)) of --data: balanced unless
    --no-balance, split by --train-frac / --validation-frac (the book's section 6.2)."""
    from minigpt.finetune import classification as cls

    try:
        records = cls.load_spam_data(args.data)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        fail(COMMAND, f"--data {args.data}: {error}")
    labels = sorted({label for label, _ in records})
    if len(labels) < 2:  # a classifier needs classes to tell apart (replace_output_head would fail later)
        fail(COMMAND, f"--data {args.data}: at least 2 labels are needed, found {len(labels)}: {', '.join(map(repr, labels))}")
    data = records if args.no_balance else cls.create_balanced_dataset(records, seed=args.seed)
    try:
        train, validation, test = cls.random_split(data, args.train_frac, args.validation_frac, seed=args.seed)
    except ValueError as error:
        fail(COMMAND, str(error).replace("train_frac", "--train-frac").replace("validation_frac", "--validation-frac"))
    if len(train) < args.batch_size or not validation:
        fail(COMMAND, f"the split gives {len(train)} training and {len(validation)} validation examples; need at "
             f"least --batch-size={args.batch_size} for training and one for validation")
    return records, data, (train, validation, test)


def _datasets(args, model, tokenizer, train, validation, test):
    """(pad_token_id, train_set, validation_set, test_set): the book's SpamDatasets (section 6.3),
    padded to the training set's length; every token id checked against the model's vocabulary."""
    from minigpt.finetune import classification as cls

    pad_token_id = getattr(tokenizer, "eot_token", None) if args.pad_token_id is None else args.pad_token_id
    if pad_token_id is None:
        fail(COMMAND, "the model's tokenizer has no <|endoftext|> token to pad with: give --pad-token-id")
    context_length = model.pos_emb.weight.shape[0]  # positions: the table's first axis
    try:
        train_set = cls.SpamDataset(train, tokenizer, args.max_length, pad_token_id, context_length=context_length,
                                    truncation=args.truncate)
        options = dict(context_length=context_length, truncation=True, label_names=train_set.label_names)
        validation_set = cls.SpamDataset(validation, tokenizer, train_set.max_length, pad_token_id, **options)
        test_set = cls.SpamDataset(test, tokenizer, train_set.max_length, pad_token_id, **options) if test else None
    except ValueError as error:
        fail(COMMAND, f"{error} (flags --max-length / --truncate)")

    vocab_size = model.tok_emb.weight.shape[0]
    largest = max(int(part.get_batch(slice(None))[0].max()) for part in (train_set, validation_set, test_set) if part)
    if largest >= vocab_size or pad_token_id < 0:
        fail(COMMAND, f"token id {largest if largest >= vocab_size else pad_token_id} (of a text or the padding, "
             f"--pad-token-id {pad_token_id}) is outside the model's vocabulary [0, {vocab_size})")
    return pad_token_id, train_set, validation_set, test_set


def _accuracies(args, model, pad_token_id, train_loader, validation_loader, test_loader) -> dict:
    """The accuracy on each split (the book's `calc_accuracy_loader`, section 6.6), printed on one line."""
    from minigpt.finetune import classification as cls

    accuracy = {}
    for name, loader in (("train", train_loader), ("validation", validation_loader), ("test", test_loader)):
        if loader is not None:
            accuracy[name] = cls.calc_accuracy_loader(loader, model, pooling=args.pooling, pad_token_id=pad_token_id)
    print(" | ".join(f"{name.capitalize()} accuracy: {value * 100:.2f}%" for name, value in accuracy.items()))
    return accuracy


def _save_weights(out: str, model, classifier: dict, lora: bool) -> str:
    """Write checkpoint.safetensors (weights + the classifier's settings) atomically; return its path."""
    from minigpt.checkpoint import CHECKPOINT_NAME, save_checkpoint

    if lora:
        from minigpt.nn import merge_lora

        merge_lora(model)  # a plain model again: `minigpt classify` loads it like any other
    path = os.path.join(out, CHECKPOINT_NAME)
    save_checkpoint(path, model.state_dict(), None, {CLASSIFIER_KEY: classifier})
    return path


def _save(out: str, model, classifier: dict, history: dict, lora: bool) -> None:
    """checkpoint.safetensors (weights + the classifier's settings), history.json, loss and accuracy plots."""
    import numpy as np

    from minigpt.finetune.classification import plot_values

    path = _save_weights(out, model, classifier, lora)
    with open(os.path.join(out, "history.json"), "w") as file:
        json.dump(history, file, indent=1)
    saved = [path]
    for label, train_values, val_values in (("loss", history["train_losses"], history["val_losses"]),
                                            ("accuracy", history["train_accs"], history["val_accs"])):
        epochs = np.linspace(0, history["epochs"], len(train_values))
        examples = np.linspace(0, history["examples_seen"], len(train_values))
        plot = plot_values(epochs, examples, train_values, val_values, label=label, path=os.path.join(out, f"{label}.png"))
        if plot is not None:
            saved.append(plot)
    print(f"saved {' and '.join(saved)}")


def load_classifier(command: str, flag: str, path: str):
    """(model, tokenizer, classifier settings) from a checkpoint written by `minigpt finetune classify`."""
    from minigpt.finetune.classification import replace_output_head
    from minigpt.model import GPTModel, get_config

    _, model_state, _, metadata = load_run_checkpoint(command, flag, path, CLASSIFIER_KEY, "minigpt finetune classify")
    classifier = metadata[CLASSIFIER_KEY]
    model = GPTModel(get_config(classifier["model_config"]), rng=0)
    replace_output_head(model, classifier["num_classes"], rng=0)
    model.load_state_dict(model_state)
    model.eval()
    return model, make_tokenizer(classifier["tokenizer"]), classifier


# task name -> (add its parser, run it)
TASKS = {"classify": (_add_classify_parser, _run_classify), "instruct": (add_instruct_parser, run_instruct), "dpo": (add_dpo_parser, run_dpo)}
