"""Flags and checks shared by the `minigpt finetune` tasks: classify (ch. 6), instruct (ch. 7), dpo.

Every task trains with AdamW over epochs of batches, estimates its losses every few steps, and
writes into --out, refusing to replace a run there without --overwrite; only the defaults (the
book's, or the DPO notebook's) and the words for what a batch holds differ. A task adds the flags
with `add_training_arguments(parser, ...)` and `add_output_arguments(parser, ...)`, and checks
them with `check_training_arguments(command, args, ...)` before loading anything, then get the
model to fine-tune from `load_base_model` (--model, --checkpoint or --init random).
"""

from __future__ import annotations

import os

from minigpt.cli.common import add_threads_argument, fail, load_run_checkpoint, make_tokenizer


def add_training_arguments(parser, *, epochs: int, batch_size: int, lr: float, weight_decay: float, eval_every: int,
                           eval_batches: int, items: str, estimates: str, source: str) -> None:
    """--epochs, --batch-size, --lr, --weight-decay, --eval-every and --eval-batches with a task's
    defaults; `items` names what a batch holds ("examples", "entries", "pairs"), `estimates` what
    an evaluation estimates, `source` where the defaults come from ("the book", "the notebook")."""
    parser.add_argument("--epochs", type=int, default=epochs, help=f"passes over the training {items} ({source}: {epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"{items} per step ({source}: {batch_size})")
    parser.add_argument("--lr", type=float, default=lr,
                        help=f"AdamW learning rate (per step; {source}: {lr:g})".replace("e-0", "e-"))  # 5e-5, not 5e-05
    parser.add_argument("--weight-decay", type=float, default=weight_decay,
                        help=f"AdamW's decoupled weight decay ({source}: {weight_decay:g})")
    parser.add_argument("--eval-every", type=int, default=eval_every,
                        help=f"estimate {estimates} every N steps ({source}: {eval_every})")
    parser.add_argument("--eval-batches", type=int, default=eval_batches,
                        help=f"batches per estimate ({source}: {eval_batches})")


def add_output_arguments(parser, *, seeds: str, out: str, contents: str) -> None:
    """--seed (`seeds`: what it seeds), --out (default `out`, holding `contents`), --overwrite, --threads."""
    parser.add_argument("--seed", type=int, default=123, help=f"seed of {seeds}")
    parser.add_argument("--out", default=out, help=f"output directory ({contents})")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already saved in --out")
    add_threads_argument(parser)


def check_training_arguments(command: str, args, **counts) -> None:
    """Stop with a flag error for a count below 1 (--epochs, --batch-size, --eval-every,
    --eval-batches, and the task's `counts`: name -> value, None for a flag left out), an --lr
    that is not > 0, or an --out that already holds a run without --overwrite."""
    positive = {"epochs": args.epochs, "batch_size": args.batch_size, "eval_every": args.eval_every,
                "eval_batches": args.eval_batches, **counts}
    for name, value in positive.items():
        if value is not None and value < 1:
            fail(command, f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.lr > 0:
        fail(command, f"--lr must be > 0, got {args.lr}")
    if os.path.exists(os.path.join(args.out, "checkpoint.safetensors")) and not args.overwrite:
        fail(command, f"--out {args.out!r} already holds a run; pass --overwrite to replace it, or choose another --out")


def load_base_model(args, command: str, default_model: str = "gpt2-small"):
    """(model, tokenizer, description) from --model (default `default_model`), --checkpoint or --init random.

    Shared by the tasks (`finetune instruct` has no --init); errors are reported as `command`
    (e.g. "minigpt finetune"), with the flag at fault and what it held.
    """
    from minigpt.model import GPTModel, get_config

    if args.checkpoint is not None:
        _, model_state, _, metadata = load_run_checkpoint(command, "--checkpoint", args.checkpoint)
        run_info = metadata["trainer"]["run_info"]
        model = GPTModel(get_config(run_info["model_config"], drop_rate=args.drop_rate), rng=args.seed)
        model.load_state_dict(model_state)
        return model, make_tokenizer(run_info["tokenizer"]), f"checkpoint {args.checkpoint}"
    tokenizer = make_tokenizer({"name": "gpt2"})
    if getattr(args, "init", None) == "random":
        sizes = {"emb_dim": args.emb_dim, "n_layers": args.n_layers, "n_heads": args.n_heads, "context_length": args.context_length}
        overrides = {name: value for name, value in sizes.items() if value is not None}
        try:
            config = get_config(args.preset, drop_rate=args.drop_rate, **overrides)
        except (KeyError, ValueError) as error:
            fail(command, f"--preset {args.preset}: {error.args[0]}")
        return GPTModel(config, rng=args.seed), tokenizer, f"random init ({args.preset})"
    from minigpt.hub import DownloadError

    name = args.model or default_model
    from minigpt.checkpoint import CHECKPOINT_NAME

    if os.path.isfile(os.path.join(name, CHECKPOINT_NAME)) or os.path.basename(name) == CHECKPOINT_NAME:
        fail(command, f"--model {name}: this is a minigpt run (it holds {CHECKPOINT_NAME}); --model takes a GPT-2 name "
                      f"or a folder of OpenAI's config.json and model.safetensors: use --checkpoint {name}")
    try:
        model = GPTModel.from_pretrained(name, drop_rate=args.drop_rate)
    except (FileNotFoundError, DownloadError, ValueError) as error:
        fail(command, f"--model {name}: {error}")
    return model, tokenizer, f"pretrained {name}"
