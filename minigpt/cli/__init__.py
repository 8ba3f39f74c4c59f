"""The `minigpt` command line, one module per command: train, generate, prepare, download, finetune, ...

    minigpt train                                  # a small GPT on the bundled the-verdict.txt
    minigpt train --preset gpt2-small              # the book's chapter-5 run (GPT_CONFIG_124M, context 256)
    minigpt train --preset char --data tinyshakespeare.txt --tokenizer char   # nanoGPT's Shakespeare-char
    minigpt generate --checkpoint runs/tiny --prompt "Every effort moves you"
    minigpt generate --model gpt2-small --prompt "Every effort moves you" --temperature 1.4 --top-k 25
    minigpt download gpt2-medium                   # OpenAI's weights into ~/.cache/minigpt
    minigpt prepare big.txt big.bin                # tokenize once into a memory-mapped token file
    minigpt finetune classify --model gpt2-small   # the book's chapter 6: a spam classifier
    minigpt classify --checkpoint runs/classify "You won a prize!"
    minigpt evaluate runs/instruct/instruction-data-with-response.json   # ROUGE-L, exact match, LLM judge (ch. 7)
    minigpt chat --checkpoint runs/instruct        # talk to an instruction-tuned model (ch. 7)
    minigpt serve --checkpoint runs/tiny           # a chat page and an OpenAI-compatible API (extra: serve)

`python -m minigpt ...` is the same. Every subcommand's `--help` lists its flags with units;
`minigpt` alone prints the help, `minigpt --version` the version. Ctrl-C or SIGTERM stops any
command with a one-line message and the shell's status (130, 143); `train` saves first.
Each command module (`minigpt/cli/train.py`, ...) has `add_parser(subparsers)` and `run(args)`;
a new command is a new module listed in `COMMANDS`. `main(argv=None)` takes a list of arguments,
so tests call it directly. The benchmarks are not a command: they live outside the package,
`python scripts/bench.py NAME` in a clone.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from minigpt.cli.common import BUNDLED_CORPORA, bundled_corpus_path

# Commands in the order `minigpt --help` lists them; each is the module minigpt.cli.<name>.
COMMANDS = ("train", "generate", "prepare", "download", "finetune", "classify", "evaluate", "chat", "serve")
# Commands that run a model for long: they get the process settings that make the engine fast.
_COMPUTE_COMMANDS = ("train", "generate", "finetune", "classify", "chat", "serve")

__all__ = ["main", "COMMANDS", "BUNDLED_CORPORA", "bundled_corpus_path"]


def main(argv=None) -> int:
    """Entry point of the `minigpt` command (and `python -m minigpt`).

    Returns the exit status; Ctrl-C or SIGTERM (turned into KeyboardInterrupt here) gives a
    one-line message and 130 or 143 instead of a traceback.
    """
    from minigpt.interrupts import exit_status, interrupt_on_sigterm

    started = []  # the command, once it runs (its own messages then say what it kept)
    try:
        with interrupt_on_sigterm():
            status = _main(argv, started)
    except KeyboardInterrupt:
        doing = f"minigpt {started[0]}: interrupted" if started else "minigpt: interrupted before the command started; nothing was saved"
        print(f"\n{doing}", file=sys.stderr)
        status = exit_status()
    if argv is None:  # the process's own command line: it exits next
        # The command has finished and said what it kept: one more Ctrl-C of a burst, landing
        # while Python shuts down, would only print a traceback from an exit handler (tqdm's
        # monitor thread, for one). Nothing is left to stop, so let the process end quietly.
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
    return status


def _main(argv, started: list) -> int:
    from minigpt import __version__

    parser = argparse.ArgumentParser(prog="minigpt", description="A GPT built from scratch on NumPy: train, generate, download, prepare, finetune, classify, evaluate, chat, serve.",
                                     epilog="`minigpt COMMAND --help` lists a command's flags.")
    parser.add_argument("--version", action="version", version=f"minigpt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {name: importlib.import_module(f"minigpt.cli.{name}") for name in COMMANDS}
    for module in modules.values():
        module.add_parser(subparsers)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command is None:  # plain `minigpt`: what it can do, not an error
        parser.print_help()
        return 0
    if args.command in _COMPUTE_COMMANDS:
        from autograd.memory import keep_freed_memory
        from autograd.parallel import set_openblas_thread_timeout

        from minigpt.cli.common import check_kernels_environment, set_kernels, set_threads

        if args.kernels is not None:  # before the command builds its model; overrides MINIGPT_KERNELS
            set_kernels(args.kernels)
        else:
            check_kernels_environment(args.command)  # a bad MINIGPT_KERNELS: one line, not a traceback
        keep_freed_memory()  # reuse freed activation buffers across steps (about 10 % faster)
        set_openblas_thread_timeout()  # idle BLAS threads free their core for the engine's threads
        if args.threads is not None:
            set_threads(args.command, args.threads)
    if getattr(args, "seed", None) is not None and args.seed < 0:  # every command's --seed: NumPy takes no negative seed
        from minigpt.cli.common import fail

        fail(args.command, f"--seed must be an integer >= 0, got {args.seed}")
    _refuse_several_ranks(args.command)
    started.append(args.command)
    return modules[args.command].run(args)


def _refuse_several_ranks(command: str) -> None:
    """Only `minigpt train` is data-parallel (docs/mpi.md). Any other command started by
    `mpirun -n N` (N > 1) would run N times side by side, each rank printing everything and
    writing the same files: stop with a message instead."""
    from minigpt.distributed import launched_ranks

    ranks = launched_ranks()
    if command != "train" and ranks > 1:
        from minigpt.cli.common import fail

        fail(command, f"started by mpirun with {ranks} ranks, but only `minigpt train` runs data-parallel: each rank "
                      f"would run the whole command on its own (its output and files {ranks} times over); run "
                      f"`minigpt {command}` without mpirun")


if __name__ == "__main__":
    sys.exit(main())
