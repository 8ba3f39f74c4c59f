"""`minigpt train`: train a GPT from scratch on a text file or a prepared token file (book ch. 5,
appendix D), with checkpoints, resume and a loss plot."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
import types

import numpy as np

from minigpt.cli.common import (BUNDLED_CORPORA, add_threads_argument, bundled_corpus_path, fail, kernels_note,
                                load_run_metadata, make_tokenizer, set_threads)

# Training recipes: the defaults of `minigpt train` for each preset. Flags given on the command
# line override them. Sizes are chosen for a 2-core CPU.
RECIPES = {
    # ~1.5 minutes on 2 cores: a 2-layer, 128-wide GPT with GPT-2's tokenizer memorises much of
    # the short story, like the book's chapter-5 run but 25x smaller.
    "tiny": dict(context_length=128, batch_size=4, epochs=30, lr=1e-3, weight_decay=0.1, eval_every=10,
                 eval_batches=5, sample_every=0, drop_rate=0.1),
    # The book's chapter 5.2 run: GPT_CONFIG_124M with context 256, AdamW(lr 4e-4, weight decay
    # 0.1), batch 2, 10 epochs, evaluation every 5 steps on 5 batches, "Every effort moves you".
    # The book's model is initialised by PyTorch's layer defaults (init="pytorch").
    "gpt2-small": dict(context_length=256, batch_size=2, epochs=10, lr=4e-4, weight_decay=0.1, eval_every=5,
                       eval_batches=5, sample_every=0, drop_rate=0.1, qkv_bias=False, tie_weights=False, init="pytorch"),
    "book-124M": dict(context_length=256, batch_size=2, epochs=10, lr=4e-4, weight_decay=0.1, eval_every=5,
                      eval_batches=5, sample_every=0, drop_rate=0.1, init="pytorch"),
    # nanoGPT's shakespeare_char CPU configuration: 4 layers, 4 heads, 128 wide, block 64, batch
    # 12, dropout 0, lr 1e-3 with cosine decay to 1e-4, 2,000 iterations, warmup 100. nanoGPT
    # samples windows at random offsets; stride 1 (every offset, shuffled) is the same.
    "char": dict(context_length=64, batch_size=12, max_steps=2000, lr=1e-3, min_lr=1e-4, schedule="cosine",
                 warmup_steps=100, initial_lr=0.0, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0,
                 eval_every=250, eval_batches=200, drop_rate=0.0, tokenizer="char", sample_prompt="\n",
                 data="tinyshakespeare.txt", stride=1),
}


# Fields of GPTConfig and the data loaders whose errors come from a `minigpt train` flag.
_FIELD_FLAGS = {"drop_rate": "--drop-rate", "context_length": "--context-length", "batch_size": "--batch-size",
                "train_ratio": "--train-ratio", "stride": "--stride", "warmup_steps": "--warmup-steps / --max-steps"}


def _name_the_flag(message: str) -> str:
    """Add '(flag --x)' to a library error that begins with a field set by a train flag.

    E.g. "GPTConfig: drop_rate must be ..." -> "... (flag --drop-rate)". The data split speaks of
    the window length, max_length, which is the model's context length here.
    """
    field = re.match(r"\w+", message.removeprefix("GPTConfig: "))
    flags = [_FIELD_FLAGS[field.group(0)]] if field and field.group(0) in _FIELD_FLAGS else []
    if "max_length" in message:
        flags.append("--context-length")
    return f"{message} (flag {' / '.join(flags)})" if flags else message


def _resolve_data_path(data: str) -> str:
    if os.path.isfile(data):
        return data
    if os.path.isdir(data):
        fail("train", f"--data {data!r} is a directory; give a text file or a .bin token file")
    if os.path.basename(data) in BUNDLED_CORPORA:
        return bundled_corpus_path(os.path.basename(data))
    fail("train", f"--data {data!r}: no such file (bundled texts, usable by name: {', '.join(BUNDLED_CORPORA)})")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a GPT on a text file (default: a small model on the bundled the-verdict.txt)",
        description="Train a GPT from scratch on a UTF-8 text file (or a token file made by "
        "`minigpt prepare`), printing losses and samples, saving a checkpoint and a loss plot.",
    )
    parser.add_argument("--preset", default="tiny", help="model preset and training recipe: tiny (default, about a minute), "
                        "gpt2-small (the book's ch. 5 run), book-124M, char (Shakespeare-char), gpt2-medium, ...")
    parser.add_argument("--arch", choices=("gpt2", "llama3", "qwen3"), default=None,
                        help="model architecture: gpt2 (the default: GPTModel, the book's), llama3 or qwen3 (Llama3Model / Qwen3Model, the "
                        "book's chapter-5 bonus; presets llama3-tiny, llama3-char, qwen3-tiny, qwen3-char, or tiny / char)")
    parser.add_argument("--data", default=None, help="training text (UTF-8) or a prepared .bin token file (default: the preset's, the-verdict.txt for most); "
                        "the bundled the-verdict.txt and tinyshakespeare.txt can be named without a path")
    parser.add_argument("--tokenizer", choices=("gpt2", "char"), help="gpt2 (byte-level BPE, 50,257 ids) or char (one id per distinct character of --data)")
    parser.add_argument("--out", default=None, help="output directory for checkpoint.safetensors, history.json and loss.png (default runs/<preset>)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the run saved in DIR exactly where it stopped, "
                        "with its saved settings and data (only --max-steps may change, to run longer; "
                        "--data NEW_PATH gives a moved copy of the data, recognised by its contents)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already saved in --out")
    parser.add_argument("--seed", type=int, default=123, help="seed of initialisation, dropout and shuffling (integer)")
    add_threads_argument(parser)
    parser.add_argument("--max-steps", type=int, help="optimizer steps in the run (overrides --epochs)")
    parser.add_argument("--epochs", type=int, help="passes over the training data")
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch")
    parser.add_argument("--grad-accum-steps", type=int, help="micro-batches per optimizer step (the update equals one big batch)")
    parser.add_argument("--context-length", type=int, help="tokens per training sequence (and the model's context)")
    parser.add_argument("--stride", type=int, help="tokens between the starts of two training windows (default: context length)")
    parser.add_argument("--lr", type=float, help="peak learning rate (per step)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), help="constant (book ch. 5) or warmup + cosine decay (appendix D)")
    parser.add_argument("--warmup-steps", type=int, help="linear warmup steps of the cosine schedule")
    parser.add_argument("--min-lr", type=float, help="final learning rate of the cosine schedule")
    parser.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay (multiplied by the learning rate)")
    parser.add_argument("--grad-clip", type=float, help="clip the global gradient L2 norm to this value (from the end of warmup)")
    parser.add_argument("--drop-rate", type=float, help="dropout probability of the model (0 to 1)")
    parser.add_argument("--init", choices=("gpt2", "pytorch"), help="weight initialisation: gpt2 (N(0, 0.02), scaled "
                        "residual projections) or pytorch (PyTorch's layer defaults, as the book's model; the default of "
                        "the gpt2-small and book-124M recipes)")
    parser.add_argument("--train-ratio", type=float, default=0.9, help="fraction of the tokens used for training; the rest validates")
    parser.add_argument("--eval-every", type=int, help="evaluate train and validation loss every N steps")
    parser.add_argument("--eval-batches", type=int, help="batches per loss estimate")
    parser.add_argument("--sample-every", type=int, help="print a greedy sample every N steps (0: only at the end)")
    parser.add_argument("--sample-prompt", help='prompt of the samples (default "Every effort moves you")')
    parser.add_argument("--sample-tokens", type=int, help="tokens per sample")
    parser.add_argument("--checkpoint-every", type=_checkpoint_every, default=None, metavar="WHEN",
                        help="periodic checkpoints: a number of steps (500), minutes of wall time (10min), or both "
                        "(500,10min: whichever comes first); off: none. A checkpoint is always saved at the end and "
                        "on Ctrl-C or SIGTERM (default: 10min)")
    parser.add_argument("--bucket-cap-mb", type=float, default=None, metavar="MB",
                        help="under mpirun: send the gradients in buckets of at most MB megabytes, each started during "
                        "backward as soon as it is complete (PyTorch DDP's bucket_cap_mb); 0: one Allreduce of all "
                        "gradients after backward. Default: 25 when the ranks span several machines (1.19x faster "
                        "steps over 1 Gbit/s), 0 when they share one (buckets were 4 %% slower there): see the "
                        "docs/mpi.md")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (it is also left out when the output is "
                        "not a terminal); evaluation lines and messages are still printed")
    parser.epilog = ("Ctrl-C or SIGTERM: the current step finishes or is rolled back, a checkpoint is saved, and the "
                     "run stops; `--resume DIR` continues it exactly. A second Ctrl-C while saving says so, a third "
                     "one abandons the save (the previous checkpoint stays). If the checkpoint folder is full or "
                     "read-only, the weights are saved in $MINIGPT_RESCUE_DIR (default: the temporary folder's "
                     "minigpt-rescue) and the message says where. Under mpirun, rank 0 saves and ends the run; if it "
                     "has not within $MINIGPT_ABORT_AFTER_SECONDS (default 30) seconds, as when it waits in the step's "
                     "Allreduce, another rank ends it and the last periodic checkpoint remains.")


def _checkpoint_every(text: str) -> tuple[int, float]:
    """--checkpoint-every: "500" -> (500 steps, 0 minutes), "10min" -> (0, 10.0), "500,10min"
    -> both, "off" -> (0, 0)."""
    steps, minutes = 0, 0.0
    if text.strip().lower() != "off":
        for part in text.replace(" ", "").lower().split(","):
            try:
                if part.endswith("min"):
                    minutes = float(part[:-3])
                    if not (minutes > 0 and minutes != float("inf")):
                        raise ValueError
                else:
                    steps = int(part)
                    if steps < 1:
                        raise ValueError
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected steps (e.g. 500), minutes (e.g. 10min), both (500,10min) "
                                                 f"or off, got {text!r}") from None
    return steps, minutes


def _file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (hex): what a run records of its data, so that a moved copy is
    recognised and a changed file is refused."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _load_token_ids(data_path: str, tokenizer_name: str):
    """Token ids of the data and the tokenizer spec: a prepared .bin file or a text file."""
    from minigpt.data import load_tokens, token_file_info

    if data_path.endswith(".bin"):
        try:
            info = token_file_info(data_path)
            ids = load_tokens(data_path)
        except (FileNotFoundError, ValueError) as error:
            fail("train", f"--data {data_path!r}: {error}")
        if tokenizer_name != info.get("tokenizer", "gpt2"):
            fail("train", f"--data {data_path!r} holds {info.get('tokenizer')!r} token ids, but the tokenizer is {tokenizer_name!r}")
        return ids, {"name": info.get("tokenizer", "gpt2")}
    try:
        # newline="": keep the file's line endings (\r\n stays \r\n), as `minigpt prepare` does.
        with open(data_path, encoding="utf-8", newline="") as file:
            text = file.read()
    except UnicodeDecodeError as error:
        fail("train", f"--data {data_path!r} is not UTF-8 text ({error.reason} at byte {error.start}); convert it, "
              "e.g. with `iconv -f latin1 -t utf-8`")
    if not text:
        fail("train", f"--data {data_path!r} is empty")
    if tokenizer_name == "char":
        from minigpt.char_tokenizer import CharTokenizer

        tokenizer = CharTokenizer.from_text(text)
        spec = {"name": "char", "characters": tokenizer.characters}
    else:
        spec = {"name": "gpt2"}
        tokenizer = make_tokenizer(spec)
    return np.asarray(tokenizer.encode(text, allowed_special={"<|endoftext|>"}), dtype=np.int64), spec


_STOPPED_BY_SIGNAL = (130, 143)  # exit statuses of a run stopped by Ctrl-C or SIGTERM (128 + the signal's number)
# Under MPI, after Ctrl-C or SIGTERM: how long the other ranks wait for rank 0 to save and end the
# run before they end it themselves (see `run`). The environment variable, read at start-up,
# overrides it (tests lower it; a run whose checkpoint takes longer to write may raise it).
ABORT_AFTER_SECONDS_VARIABLE = "MINIGPT_ABORT_AFTER_SECONDS"
DEFAULT_ABORT_AFTER_SECONDS = 30.0


def abort_after_seconds(environ=None) -> float:
    """Seconds the ranks other than 0 wait for rank 0 after a stop signal, from $MINIGPT_ABORT_AFTER_SECONDS
    (default 30).

    Raises:
        SystemExit (`minigpt train: error: ...`): the variable is set but is not a finite number >= 0.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(ABORT_AFTER_SECONDS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_ABORT_AFTER_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds >= 0 and math.isfinite(seconds)):
        fail("train", f"${ABORT_AFTER_SECONDS_VARIABLE} must be a number of seconds >= 0 (default "
                      f"{DEFAULT_ABORT_AFTER_SECONDS:g}), got {text!r}")
    return seconds


def run(args) -> int:
    """Run `minigpt train` with parsed arguments (see `add_parser`).

    Under `mpirun -n N` (or mpiexec) the run is data-parallel over N ranks (minigpt/distributed.py):
    rank 0 prints and writes the run; an error that ends one rank aborts them all.
    """
    try:
        from minigpt.distributed import init

        world = init()
    except KeyboardInterrupt:  # a Ctrl-C this early also gets the message of `_run_interruptible`
        return _interrupted_before_training()
    if world.size == 1:
        return _run_interruptible(args, world)
    if args.threads is None:  # the ranks on one machine share its CPUs
        from autograd.parallel import available_cpus

        from minigpt.cli.common import set_threads

        set_threads("train", max(1, available_cpus() // world.local_size))
    if not world.is_main:
        sys.stdout = open(os.devnull, "w")  # rank 0 prints for the run; errors still reach stderr
    try:
        seconds_for_rank_0 = abort_after_seconds()  # at start-up: a bad value fails now, not after a Ctrl-C
        status = _run_interruptible(args, world)
    except SystemExit as stop:
        if stop.code in (0, None):
            raise
        # NOTE: an error on one rank only (a data file missing on one machine) would leave the
        # others waiting in the next collective forever: abort them all.
        print(f"[rank {world.rank} of {world.size}] {stop.code}", file=sys.stderr)
        world.abort(1)
    if status in _STOPPED_BY_SIGNAL:
        # mpirun forwards Ctrl-C to every rank, each at another point of its step, so some rank
        # may be left waiting in a collective: stop them all. Rank 0 does so once it has saved
        # the last completed step; another rank waits for that, and if rank 0 does not come
        # (it was waiting in the step's Allreduce, which this rank left), stops the run itself
        # after $MINIGPT_ABORT_AFTER_SECONDS, and the last periodic checkpoint is what remains.
        if not world.is_main:
            time.sleep(seconds_for_rank_0)
            print(f"[rank {world.rank} of {world.size}] rank 0 did not end the run within {seconds_for_rank_0:g} s of the "
                  f"stop (${ABORT_AFTER_SECONDS_VARIABLE}): it is probably waiting in the step's Allreduce; aborting "
                  "every rank. The last checkpoint rank 0 wrote (--checkpoint-every) is what remains", file=sys.stderr)
        world.abort(status)
    return status


def _keep_global_batch(config, saved_ranks: int, ranks: int):
    """A run resumed with another number of MPI ranks keeps its global batch (micro-batches per step)
    when it divides evenly: grad_accum_steps becomes saved_accum x saved_ranks / ranks."""
    if ranks == saved_ranks:
        return config
    micro_batches = config.grad_accum_steps * saved_ranks
    if micro_batches % ranks:
        print(f"note: the run used {saved_ranks} rank(s) x {config.grad_accum_steps} accumulation step(s) = {micro_batches} "
              f"micro-batches per step, which {ranks} ranks cannot share evenly: the global batch becomes "
              f"{config.grad_accum_steps * ranks} micro-batches")
        return config
    print(f"note: the run used {saved_ranks} rank(s) x {config.grad_accum_steps} accumulation step(s); continuing with "
          f"{ranks} rank(s) x {micro_batches // ranks}, the same {micro_batches} micro-batches per step")
    return dataclasses.replace(config, grad_accum_steps=micro_batches // ranks)


def _check_resumed_max_steps(max_steps: int, saved_step: int, settings: dict) -> None:
    """Stop with a flag error when a resumed run's --max-steps ends within its cosine warmup, which
    a resumed run keeps (its --warmup-steps cannot be changed; the trainer's own error named that
    flag). A --max-steps below the saved step is "nothing to train" (see `_train`)."""
    warmup_steps = settings.get("warmup_steps") or 0
    if settings.get("schedule") == "cosine" and saved_step <= max_steps <= warmup_steps:
        fail("train", f"--max-steps {max_steps} ends the run within its {warmup_steps} warmup steps, which a resumed "
                      f"run keeps: give --max-steps above {warmup_steps}")


def _run_interruptible(args, world) -> int:
    """Run the command; Ctrl-C or SIGTERM before training starts: a one-line message, nothing
    written, status 130 (143 for SIGTERM). During training: see `Trainer.fit`."""
    try:
        return _train(args, world)
    except KeyboardInterrupt:
        return _interrupted_before_training()


def _interrupted_before_training() -> int:
    """Say that nothing was written; return 130 (143 for SIGTERM)."""
    from minigpt.interrupts import exit_status

    print("\nminigpt train: interrupted before training started; nothing was saved", file=sys.stderr)
    return exit_status()


def _train(args, world) -> int:
    """`minigpt train` step by step, as a training script reads: settings, data, model, fit, report."""
    from minigpt.interrupts import exit_status

    _check_process_flags(args)
    run = _resumed_run(args, world) if args.resume else _new_run(args)
    if run is None:  # a resumed run already past --max-steps
        return 0
    _check_out_dir(run.out_dir)
    _load_data(args, run)
    trainer = _build_trainer(args, run, world)
    if args.resume and _resume(args, run, trainer):
        return 0  # already complete
    _check_sample_prompt(run.config, run.tokenizer)
    _print_run(args, run, trainer, world)
    trainer.quiet = args.quiet
    try:
        history = _fit(trainer)
    except KeyboardInterrupt:
        if trainer.stop_report is None:  # stopped before fit() could take over the signals
            print("\nminigpt train: interrupted before training started; nothing was saved", file=sys.stderr)
        return exit_status(trainer.stop_signal)
    try:
        trainer.sample()
    except KeyboardInterrupt:
        print(f"\ninterrupted after training: checkpoint of step {trainer.step} saved in {run.out_dir}", file=sys.stderr)
        return exit_status()
    _print_result(run.out_dir, trainer, history)
    return 0


def _check_process_flags(args) -> None:
    """--bucket-cap-mb must be a size; --checkpoint-every "500,10min" becomes its two TrainingConfig fields."""
    if args.bucket_cap_mb is not None and not (math.isfinite(args.bucket_cap_mb) and args.bucket_cap_mb >= 0):
        fail("train", f"--bucket-cap-mb must be a number of megabytes >= 0 (0: one Allreduce after backward), got {args.bucket_cap_mb}")
    if args.checkpoint_every is not None:  # "500,10min" -> the two TrainingConfig fields
        args.checkpoint_every, args.checkpoint_minutes = args.checkpoint_every


def _resumed_run(args, world):
    """The settings of a `--resume` run, read from its checkpoint (a `types.SimpleNamespace`), or
    None when the checkpoint is already past --max-steps (nothing to train)."""
    from minigpt.architectures import config_from_run_info
    from minigpt.trainer import TrainingConfig

    checkpoint_path, metadata = load_run_metadata("train", "--resume", args.resume)
    run_info = metadata["trainer"]["run_info"]
    settings = dict(metadata["trainer"]["training_config"])
    settings["betas"] = tuple(settings["betas"]) if settings.get("betas") is not None else None
    if args.max_steps is not None:  # the one setting a resumed run may change: run longer
        _check_resumed_max_steps(args.max_steps, metadata["trainer"]["step"], settings)
        settings["max_steps"] = args.max_steps
    if args.checkpoint_every is not None:  # how often to save does not change the results
        settings["checkpoint_every"], settings["checkpoint_minutes"] = args.checkpoint_every, args.checkpoint_minutes
    ignored = [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
               if value not in (None, False) and name not in ("command", "resume", "max_steps", "out", "preset", "seed", "train_ratio",
                                                              "data", "checkpoint_every", "checkpoint_minutes", "quiet", "threads",
                                                              "bucket_cap_mb", "kernels")]
    if ignored:
        print(f"note: a resumed run keeps its saved settings; ignoring {', '.join(ignored)}")
    config = _keep_global_batch(TrainingConfig(**settings), run_info.get("ranks", 1), world.size)
    model_config = config_from_run_info(run_info)
    out_dir = args.out or os.path.dirname(os.path.abspath(checkpoint_path))
    saved_step = metadata["trainer"]["step"]
    if (args.max_steps is not None and args.max_steps < saved_step
            and os.path.abspath(out_dir) == os.path.dirname(os.path.abspath(checkpoint_path))):
        # Before the Trainer is built: a --max-steps below its warmup would be refused there.
        # (Equal: the Trainer decides, as the step's evaluation may still be due.)
        print(f"{checkpoint_path} is already at step {saved_step}, past --max-steps {args.max_steps}: "
              f"nothing to train (raise --max-steps above {saved_step} to train longer)")
        return None
    data_path = _resolve_data_path(args.data) if args.data else run_info["data"]
    if args.threads is None and run_info.get("ranks", 1) == world.size:  # other ranks: their own CPU share
        _use_the_runs_threads(run_info.get("threads"))
    return types.SimpleNamespace(
        checkpoint_path=checkpoint_path, metadata=metadata, out_dir=out_dir,
        config=config, model_config=model_config, data_path=data_path,
        tokenizer_spec=run_info["tokenizer"], tokenizer_name=None,
        batch_size=run_info["batch_size"], stride=run_info["stride"], train_ratio=run_info["train_ratio"],
        init=run_info.get("init", "gpt2"),  # the checkpoint's weights replace it anyway
        arch=run_info.get("arch", "gpt2"), preset=run_info.get("preset"),
    )


def _new_run(args):
    """The settings of a new run (a `types.SimpleNamespace`): each flag given, else the preset's
    recipe, else the default; checked together before anything is loaded."""
    from minigpt.checkpoint import CHECKPOINT_NAME
    from minigpt.model import PRESETS

    arch, preset = getattr(args, "arch", None) or "gpt2", args.preset
    if arch != "gpt2":
        preset = _llama_qwen_preset(arch, preset)
    elif args.preset not in PRESETS:
        fail("train", f"--preset {args.preset!r}: unknown preset; choose one of {', '.join(PRESETS)}")
    recipe_name = preset.split("-", 1)[1] if arch != "gpt2" and preset.startswith(arch + "-") else preset
    recipe = dict(RECIPES.get(recipe_name, RECIPES["book-124M"] if preset.startswith("gpt2") else {}))
    if arch != "gpt2":  # Llama 3 and Qwen3 have no dropout, no qkv bias, and their own tying
        recipe = {key: value for key, value in recipe.items() if key not in ("drop_rate", "qkv_bias", "tie_weights", "init")}
        if args.drop_rate:
            fail("train", f"--drop-rate {args.drop_rate}: --arch {arch} has no dropout")
    flag_values = {key: value for key, value in vars(args).items() if value is not None}

    def setting(name, default=None):
        """A flag given on the command line, else the preset's recipe, else `default`."""
        return flag_values.get(name, recipe.get(name, default))

    model_overrides = {name: recipe[name] for name in ("qkv_bias", "tie_weights") if name in recipe}
    if setting("context_length") is not None:
        model_overrides["context_length"] = setting("context_length")
    if setting("drop_rate") is not None and arch == "gpt2":
        model_overrides["drop_rate"] = setting("drop_rate")
    config = _new_training_config(args, setting, flag_values)
    if args.stride is not None and args.stride < 1:
        fail("train", f"--stride must be at least 1 token, got {args.stride}")
    out_dir = args.out or os.path.join("runs", preset)
    if os.path.isfile(os.path.join(out_dir, CHECKPOINT_NAME)) and not args.overwrite:
        fail("train", f"{out_dir} already holds a run (checkpoint.safetensors): continue it with --resume {out_dir}, "
              "choose another --out, or pass --overwrite to replace it")
    return types.SimpleNamespace(
        checkpoint_path=None, metadata=None, out_dir=out_dir, config=config, model_config=None,
        model_overrides=model_overrides, stride_setting=setting("stride"),
        data_path=_resolve_data_path(setting("data", "the-verdict.txt")),
        tokenizer_spec=None, tokenizer_name=setting("tokenizer", "gpt2"),
        batch_size=setting("batch_size", 4), stride=None, train_ratio=args.train_ratio, init=setting("init", "gpt2"),
        arch=arch, preset=preset,
    )


def _llama_qwen_preset(arch: str, preset: str) -> str:
    """The Llama 3 / Qwen3 preset `--preset` names ("tiny" with --arch qwen3: "qwen3-tiny"), or a flag error."""
    from minigpt.architectures import resolve_preset

    try:
        return resolve_preset(arch, preset)
    except KeyError as error:
        fail("train", f"--preset {preset!r}: {error.args[0]}")


def _new_training_config(args, setting, flag_values: dict):
    """The TrainingConfig of a new run from `setting(name)`, validated; flag errors name the flag."""
    from minigpt.trainer import TrainingConfig

    field_names = {field.name for field in dataclasses.fields(TrainingConfig)}
    config = TrainingConfig(**{name: setting(name) for name in field_names if setting(name) is not None})
    try:
        config.validate()
    except ValueError as error:
        # A command-line user cannot pass None: "must be >= 1 or None" -> "must be >= 1".
        message = str(error).replace(" or None", "")
        fail("train", f"{message} (flag --{message.split()[0].replace('_', '-')})")
    if ("warmup_steps" not in flag_values and config.schedule == "cosine" and config.max_steps is not None
            and config.warmup_steps >= config.max_steps):
        # A short trial run of a recipe with a long warmup (char: 100 steps): shorten the warmup
        # rather than refuse; an explicit --warmup-steps that does not fit is still an error.
        shortened = config.max_steps // 10
        print(f"note: the {args.preset} recipe's {config.warmup_steps} warmup steps do not fit in --max-steps "
              f"{config.max_steps}; warming up for {shortened} steps")
        config = dataclasses.replace(config, warmup_steps=shortened)
    for flag, name in (("--min-lr", "min_lr"), ("--warmup-steps", "warmup_steps")):
        if name in flag_values and config.schedule != "cosine":
            fail("train", f"{flag} applies to --schedule cosine only; the schedule is {config.schedule!r} "
                           "(add --schedule cosine, or drop the flag)")
    if config.schedule == "cosine" and config.min_lr is not None and config.min_lr > config.lr:
        fail("train", f"--min-lr {config.min_lr} is above --lr {config.lr}: the cosine schedule decays from --lr down to --min-lr")
    return config


def _check_out_dir(out_dir: str) -> None:
    """Make sure the output folder can be written before any time is spent training."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        fail("train", f"--out {out_dir!r} is a file; give a folder (it will hold checkpoint.safetensors, history.json and loss.png)")
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write-test-{os.getpid()}")  # one per rank under MPI
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        fail("train", f"--out {out_dir!r} cannot be written: {error.strerror or error}")


def _load_data(args, run) -> None:
    """Read the run's token ids (`run.token_ids`) and its tokenizer (`run.tokenizer`, `run.tokenizer_spec`)."""
    if not os.path.isfile(run.data_path):
        fail("train", f"the run's data file {run.data_path!r} is missing" +
             ("; if it moved, give its new path: --resume DIR --data NEW_PATH" if args.resume else ""))
    run.data_sha256 = _file_sha256(run.data_path)
    if args.resume:
        _check_resumed_data(run.data_path, run.data_sha256, run.metadata["trainer"]["run_info"])
    run.token_ids, spec_from_data = _load_token_ids(run.data_path, run.tokenizer_spec["name"] if run.tokenizer_spec else run.tokenizer_name)
    run.tokenizer_spec = run.tokenizer_spec or spec_from_data
    run.tokenizer = make_tokenizer(run.tokenizer_spec)


def _build_trainer(args, run, world):
    """The data loaders, the model, AdamW and the Trainer; sizes that do not fit together (a context
    longer than the data, ...) are flag errors."""
    from autograd.parallel import get_num_threads

    from minigpt.data import DataLoader, GPTDataset, train_val_split
    from minigpt.architectures import model_class, new_model_config
    from minigpt.optim import AdamW
    from minigpt.trainer import Trainer

    config = run.config
    try:
        if not args.resume:
            run.model_config = new_model_config(run.arch, run.preset, **run.model_overrides, vocab_size=run.tokenizer.n_vocab)
            run.stride = run.stride_setting or run.model_config.context_length
        context_length = run.context_length = run.model_config.context_length
        run.train_ids, run.val_ids = train_val_split(run.token_ids, run.train_ratio, max_length=context_length)
        train_windows = GPTDataset(run.train_ids, None, context_length, run.stride)
        if len(train_windows) < run.batch_size:
            fail("train", f"--batch-size {run.batch_size} is larger than the {len(train_windows):,} training sequences of "
                          f"{context_length} tokens (stride {run.stride}) in {run.data_path}: use --batch-size {len(train_windows)} "
                          "or less, a shorter --context-length or --stride, or more data")
        run.train_loader = DataLoader(train_windows, batch_size=run.batch_size, shuffle=True, drop_last=True, seed=config.seed)
        val_loader = DataLoader(GPTDataset(run.val_ids, None, context_length, context_length), batch_size=run.batch_size,
                                shuffle=False, drop_last=False)
        run.model = model_class(run.arch)(run.model_config, rng=config.seed, init=run.init)
        # The recipe's settings go to the optimizer (AdamW's own default where a recipe has none, as
        # betas); the Trainer then reads them back from it (one source of truth).
        optimizer = AdamW(run.model.parameters(), **{name: getattr(config, name) for name in ("lr", "betas", "weight_decay")
                                                     if getattr(config, name) is not None})
        run_info = {
            "model_config": run.model_config.to_dict(), "tokenizer": run.tokenizer_spec, "data": os.path.abspath(run.data_path),
            "batch_size": run.batch_size, "stride": run.stride, "train_ratio": run.train_ratio, "init": run.init,
            "preset": getattr(args, "preset", None), "arch": run.arch,
            # A process setting, not a run setting, but the engine's sums split over threads: a
            # resume without --threads uses the same count to repeat the run's arithmetic.
            "threads": get_num_threads(),
        }
        run_info["num_tokens"] = int(len(run.token_ids))
        run_info["data_sha256"] = run.data_sha256  # recognises the data if it moves (--resume DIR --data NEW_PATH)
        run_info["ranks"] = world.size  # MPI ranks (1: one process); the global batch is per step over all of them
        return Trainer(run.model, optimizer, run.train_loader, val_loader, config, tokenizer=run.tokenizer, out_dir=run.out_dir,
                       run_info=run_info, world=world, bucket_cap_mb=_bucket_cap_mb(args.bucket_cap_mb, world))
    except (ValueError, KeyError) as error:
        fail("train", _name_the_flag(str(error.args[0]) if error.args else repr(error)))


def _resume(args, run, trainer) -> bool:
    """Load the checkpoint into `trainer`; True when the run is already complete (nothing to train)."""
    checkpoint_path, out_dir = run.checkpoint_path, run.out_dir
    saved_tokens = run.metadata["trainer"]["run_info"].get("num_tokens")
    if saved_tokens is not None and saved_tokens != len(run.token_ids):  # checkpoints from before data_sha256
        fail("train", f"the run's data file {run.data_path} now has {len(run.token_ids):,} tokens, the run was trained on "
              f"{saved_tokens:,}: it changed, so the run cannot continue exactly")
    try:
        trainer.load(checkpoint_path)
    except ValueError as error:
        fail("train", f"--resume {args.resume!r}: {error}")
    if trainer.is_complete:
        print(f"{checkpoint_path} is already at step {trainer.step} of {trainer.total_steps}: nothing to train "
              "(raise --max-steps to train longer)")
        if os.path.abspath(out_dir) != os.path.dirname(os.path.abspath(checkpoint_path)):
            try:  # e.g. a run rescued from a full disk, moved back into its folder
                print(f"saved a copy in {trainer.save()}")
            except OSError as error:
                fail("train", str(error))
        return True
    print(f"resuming {checkpoint_path} at step {trainer.step} of {trainer.total_steps}")
    return False


def _check_sample_prompt(config, tokenizer) -> None:
    """Encode the sample prompt now: a prompt the tokenizer cannot encode must fail before training."""
    from minigpt.generate import text_to_token_ids

    try:
        if not text_to_token_ids(config.sample_prompt, tokenizer).size and (config.sample_every or config.sample_tokens):
            fail("train", "--sample-prompt is empty: give at least one character to continue")
    except KeyError as error:
        fail("train", f"--sample-prompt: {error.args[0]}")


def _print_run(args, run, trainer, world) -> None:
    """The resolved configuration and the seed, printed at start."""
    config, batch_size, context_length = run.config, run.batch_size, run.context_length
    print(f"model: {json.dumps(run.model_config.to_dict())}")
    print(f"parameters: {run.model.num_parameters():,} (init {run.init}) | tokenizer: {run.tokenizer_spec['name']} "
          f"(vocabulary {run.tokenizer.n_vocab:,})")
    print(f"data: {run.data_path}: {len(run.token_ids):,} tokens, {len(run.train_ids):,} train / {len(run.val_ids):,} validation; "
          f"{len(run.train_loader):,} batches of {batch_size} x {context_length} per epoch")
    print(f"training: {json.dumps(dataclasses.asdict(trainer.config))}")
    print(f"seed: {config.seed} | steps: {trainer.total_steps} | output: {run.out_dir}{kernels_note(args)}")
    if world.size > 1:
        print(f"data-parallel over {world.size} MPI ranks: global batch {batch_size} x {config.grad_accum_steps} (accumulation) "
              f"x {world.size} (ranks) = {trainer.batches_per_step * batch_size} sequences of {context_length} tokens per step; "
              + (f"gradients in {len(trainer.gradient_buckets.buckets)} bucket(s) of at most "
                 f"{_bucket_cap_mb(args.bucket_cap_mb, world):g} MB, started during backward"
                 if trainer.gradient_buckets is not None else "one Allreduce of all gradients per step"))


def _fit(trainer) -> dict:
    """`trainer.fit()`; its errors become one-line command errors (an interrupt goes up to `_train`)."""
    from minigpt.distributed import RanksDisagreeError

    try:
        return trainer.fit()
    except FloatingPointError as error:
        flag = " (flag --lr)" if "lower the learning rate" in str(error) else ""  # not for NaN inputs or weights
        fail("train", f"{error}{flag}; the run's last checkpoint, if any, is untouched")
    except OSError as error:  # CheckpointSaveError: a full or read-only disk
        fail("train", str(error))
    except RanksDisagreeError as error:  # a command error on every rank (MPI_Abort), not a traceback
        fail("train", str(error))


def _print_result(out_dir: str, trainer, history: dict) -> None:
    """The final losses and where the checkpoint and the plot were saved."""
    from minigpt.checkpoint import CHECKPOINT_NAME

    if history["val_loss"]:
        print(f"final: train loss {history['train_loss'][-1]:.3f}, val loss {history['val_loss'][-1]:.3f}, "
              f"{trainer.elapsed_seconds:.1f} s of training in this run, {trainer.step} steps in all")
    print(f"saved {os.path.join(out_dir, CHECKPOINT_NAME)}" + (f" and {os.path.join(out_dir, 'loss.png')}" if os.path.exists(os.path.join(out_dir, 'loss.png')) else
          " (install matplotlib, `pip install -e .[plot]`, for loss.png)"))


# Gradient buckets when the ranks span several machines: PyTorch DDP's default size. Measured
# (docs/mpi.md): over a simulated 1 Gbit/s link, book-124M steps took 7.08 s with buckets
# against 8.40 s with one Allreduce after backward; on one machine (loopback, one rank per core)
# buckets took 1.04x as long, their copies and reductions competing with backward for the core.
MULTI_MACHINE_BUCKET_CAP_MB = 25.0


def _bucket_cap_mb(flag: float | None, world) -> float | None:
    """The Trainer's bucket_cap_mb for --bucket-cap-mb: the flag (0: None, one Allreduce), or by default
    MULTI_MACHINE_BUCKET_CAP_MB when the ranks are not all on this machine, else None."""
    if flag is None:
        return MULTI_MACHINE_BUCKET_CAP_MB if world.local_size < world.size else None
    return flag if flag > 0 else None


def _use_the_runs_threads(threads: int | None) -> None:
    """On --resume without --threads: run with the thread count the run recorded, with a note."""
    from autograd.parallel import available_cpus, get_num_threads

    if threads is None or threads == get_num_threads():  # a run from before threads were recorded, or the same
        return
    if threads > available_cpus():
        print(f"note: the run used {threads} threads, this process may use {available_cpus()}: the results may "
              "differ from an uninterrupted run in the last bits")
        return
    print(f"note: using the run's thread count, --threads {threads} (so that it repeats the same arithmetic); "
          "give --threads to choose another")
    set_threads("train", threads)


def _check_resumed_data(data_path: str, data_sha256: str, run_info: dict) -> None:
    """--resume: the data must be the run's, byte for byte, wherever it now is.

    The run recorded its data file's SHA-256 when it started (`data_sha256`); a copy with the
    same contents under another path is accepted (and the new path recorded), a file whose
    contents changed is refused even when its token count did not change.
    """
    recorded = run_info.get("data_sha256")
    if recorded is None:  # a checkpoint from before content hashes: the token count is checked later
        return
    if recorded != data_sha256:
        fail("train", f"the data {data_path} is not the run's data: its contents changed since the run started "
                      f"(SHA-256 {data_sha256[:16]}..., recorded {recorded[:16]}... from {run_info['data']}); "
                      "the run cannot continue exactly. Give the original file with --data, or start a new run")
    if os.path.abspath(data_path) != run_info["data"]:
        print(f"note: the run's data moved: {run_info['data']} -> {os.path.abspath(data_path)} (same contents, SHA-256 {recorded[:16]}...)")
