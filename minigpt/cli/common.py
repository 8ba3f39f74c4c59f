"""Helpers shared by the `minigpt` commands: errors without tracebacks, bundled corpora, threads,
run checkpoints and tokenizers named in them."""

from __future__ import annotations

import os
import sys
from importlib import resources

# --kernels: the two versions of autograd's fused ops (autograd.set_kernels).
KERNELS = ("reference", "fast")

BUNDLED_CORPORA = ("the-verdict.txt", "tinyshakespeare.txt")


def bundled_corpus_path(name: str) -> str:
    """The path of a text shipped inside the package (`minigpt/corpora/NAME`)."""
    return str(resources.files("minigpt").joinpath("corpora", name))


def fail(command: str, message: str):
    """Stop with `minigpt COMMAND: error: MESSAGE` on stderr and exit status 1 (no traceback)."""
    raise SystemExit(f"minigpt {command}: error: {message}")


def flag_names(message: str) -> str:
    """Name the command-line flags in a message of the generation library (top_k -> --top-k, ...),
    for `generate` and `chat`, whose sampling flags carry the library's argument names."""
    for argument in ("max_new_tokens", "temperature", "top_k", "top_p"):
        message = message.replace(argument, "--" + argument.replace("_", "-"))
    return message.replace(" or None", "")  # a command-line user cannot pass None: leaving the flag out is that


def save_after_interrupt(command: str, signal_number, completed_steps: int, total_steps: int, save, usage: str) -> int:
    """After Ctrl-C or SIGTERM stopped a fine-tuning command's training: write the weights of its
    last completed step with `save()` (an atomic write that returns the path), say where they are
    and how to use them, and return the exit status (130 for Ctrl-C, 143 for SIGTERM).

    The fine-tuning commands cannot resume (their optimizer state and data position are not
    kept), so the message also says that a new run starts over. A second signal during the save
    prints "saving checkpoint... press Ctrl-C again to abandon it"; a third one abandons it (the
    atomic write leaves no partial file, and any earlier file stays as it was).
    """
    import signal

    from minigpt.interrupts import SIGNAL_NAMES, SaveAbandoned, StopRequests, exit_status

    name = SIGNAL_NAMES.get(signal_number, "interrupted")
    if completed_steps == 0:
        print(f"\nminigpt {command}: {name} before the first step was complete; nothing was saved")
        return exit_status(signal_number)
    stops = StopRequests()
    stops.signal = signal_number or signal.SIGINT  # the run is stopped already: a next signal is about this save
    stops.install()
    try:
        with stops.defer():
            path = save()
    except SaveAbandoned:
        print(f"\nminigpt {command}: {name}: save abandoned; nothing was saved")
        return exit_status(signal_number)
    finally:
        stops.restore()
    print(f"\nminigpt {command}: {name}: stopped after step {completed_steps} of {total_steps}; the weights of that step "
          f"are saved in {path} (use them: {usage}). Fine-tuning cannot resume from them: running the command again "
          "(with --overwrite) starts over.")
    return exit_status(signal_number)


def add_threads_argument(parser) -> None:
    """--threads and --kernels, the process settings of every command that runs a model (train,
    generate, chat, classify, the finetune tasks); `minigpt.cli.main` applies them (`set_threads`,
    `autograd.set_kernels`) before the command builds its model."""
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for matrix products (BLAS) and the engine's element-wise work "
                             "(default: every CPU this process may use)")
    parser.add_argument("--kernels", choices=KERNELS, default=None,
                        help="autograd kernels: 'reference' (plain NumPy, what a learner steps into) or 'fast' (default)")


def kernels_note(args) -> str:
    """" | kernels: NAME" for the resolved configuration a command prints at start, when --kernels was given."""
    kernels = getattr(args, "kernels", None)
    return "" if kernels is None else f" | kernels: {kernels}"


def report_kernels(args) -> None:
    """Print "kernels: NAME" on stderr when --kernels was given (for the commands whose standard
    output is the model's text, so that it stays clean)."""
    if getattr(args, "kernels", None) is not None:
        print(f"kernels: {args.kernels}", file=sys.stderr)


def check_kernels_environment(command: str) -> None:
    """Stop with one line when MINIGPT_KERNELS holds neither "reference" nor "fast" (and no
    --kernels chose a set): `autograd.get_kernels()` raises the ValueError that names the variable."""
    import autograd

    try:
        autograd.get_kernels()
    except ValueError as error:
        fail(command, f"{error} (or pass --kernels reference|fast)")


def set_kernels(kernels: str) -> None:
    """--kernels: `autograd.set_kernels(kernels)`, the engine's switch between its reference and fast
    versions of the fused ops (the same as MINIGPT_KERNELS=reference in the environment)."""
    import autograd

    autograd.set_kernels(kernels)


def set_threads(command: str, threads: int) -> None:
    """--threads: the engine's threads (autograd.parallel) and BLAS's (through threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    from autograd.parallel import available_cpus, set_num_threads

    available = available_cpus()
    if not 1 <= threads <= available:
        fail(command, f"--threads must be between 1 and the {available} CPUs this process may use, got {threads}")
    set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")  # stays in force for the rest of the process


def run_checkpoint_file(command: str, flag: str, path: str) -> str:
    """The checkpoint file of a run directory (or the file itself); a clear error when missing."""
    from minigpt.checkpoint import CHECKPOINT_NAME

    checkpoint_path = os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(checkpoint_path):
        fail(command, f"{flag} {path!r}: no checkpoint there (expected a run directory holding {CHECKPOINT_NAME}, or the file)")
    return checkpoint_path


def load_run_checkpoint(command: str, flag: str, path: str, required: str = "trainer", writer: str = "minigpt train"):
    """(checkpoint path, model_state, optimizer_state, metadata) of a checkpoint written by `minigpt train`
    (or by `writer`, whose checkpoints hold the metadata entry `required`)."""
    from minigpt.checkpoint import load_checkpoint

    checkpoint_path = run_checkpoint_file(command, flag, path)
    try:
        model_state, optimizer_state, metadata = load_checkpoint(checkpoint_path)
    except ValueError as error:
        fail(command, f"{flag} {path!r}: {error}")
    if required not in metadata:
        hint = ""
        if "classifier" in metadata and command != "classify":  # `minigpt finetune classify`'s run
            hint = f"; it is a classifier run of `minigpt finetune classify`: use `minigpt classify --checkpoint {path} TEXT...`"
        fail(command, f"{flag} {path!r}: the checkpoint has no {required} state (it was not written by `{writer}`){hint}")
    return checkpoint_path, model_state, optimizer_state, metadata


def load_run_metadata(command: str, flag: str, path: str):
    """(checkpoint path, metadata) of a run checkpoint, reading its header only (the tensors are
    read, and their checksums verified, when the run is restored)."""
    from minigpt.checkpoint import load_checkpoint_metadata

    checkpoint_path = run_checkpoint_file(command, flag, path)
    try:
        metadata = load_checkpoint_metadata(checkpoint_path)
    except ValueError as error:
        fail(command, f"{flag} {path!r}: {error}")
    if "trainer" not in metadata:
        fail(command, f"{flag} {path!r}: the checkpoint has no training state (it was not written by `minigpt train`)")
    return checkpoint_path, metadata


def end_of_text_id(tokenizer, model) -> int | None:
    """The id that ends a generated text: the tokenizer's <|endoftext|> (GPT-2's 50256), or None
    when it has none or the model's vocabulary is smaller (a model that cannot produce the id
    generates up to the token limit; `generate` refuses an eos_id outside the vocabulary)."""
    eos_id = getattr(tokenizer, "eot_token", None)
    return eos_id if eos_id is not None and eos_id < model.cfg.vocab_size else None


def make_tokenizer(spec: dict):
    """Build a tokenizer from its checkpoint spec: {"name": "gpt2"} or {"name": "char", "characters": ...}."""
    if spec["name"] == "char":
        from minigpt.char_tokenizer import CharTokenizer

        return CharTokenizer(spec["characters"])
    from minigpt.tokenizer import get_encoding

    return get_encoding(spec["name"])


