"""`minigpt generate`: continue a prompt with a trained checkpoint or OpenAI's GPT-2 (book ch. 4-5).

The text is printed as it is generated (`stream_generate` with the KV cache, `decode_stream`:
a character split over two tokens is printed once, whole); the end-of-text token ends it.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from autograd.random import Generator
from minigpt.cli.common import (add_threads_argument, end_of_text_id, fail, flag_names, load_run_checkpoint, make_tokenizer,
                                report_kernels)


class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows each flag's default, except where there is none to show (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or "%(default)" in (action.help or ""):
            return action.help
        return f"{action.help} (default: %(default)s)"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="continue a prompt with a trained checkpoint or OpenAI's GPT-2",
                                   formatter_class=_DefaultsHelpFormatter,
                                   description="Generate text from a checkpoint written by `minigpt train`, or from "
                                   "OpenAI's GPT-2 weights (downloaded once into $MINIGPT_HOME, default ~/.cache/minigpt).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run directory or its checkpoint.safetensors")
    source.add_argument("--model", help="gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, a Hugging Face GPT-2 "
                        "directory / .safetensors file, or a Hugging Face Llama 3 / Qwen3 folder (config.json, safetensors, tokenizer)")
    parser.add_argument("--prompt", default="Every effort moves you", help="the text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; above 0 samples (1.0 = the model's distribution)")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample only from the smallest set of tokens with this total probability (default: all)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the sampling generator (an integer >= 0)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run the whole sequence for every token instead of using the KV cache (same text, slower)")
    add_threads_argument(parser)


def run(args) -> int:
    """Run `minigpt generate` with parsed arguments."""
    from minigpt.architectures import hf_folder_tokenizer, load_hf_folder, model_from_run_info
    from minigpt.generate import decode_stream, stream_generate, text_to_token_ids

    if args.model is not None:
        from minigpt.hub import DownloadError

        try:
            model, arch = load_hf_folder(args.model)  # GPT-2, Llama 3 or Qwen3, as its config.json says
            tokenizer = make_tokenizer({"name": "gpt2"}) if arch == "gpt2" else hf_folder_tokenizer(args.model, arch)
        except (FileNotFoundError, DownloadError, ValueError, ImportError) as error:
            fail("generate", f"--model {args.model}: {error}")
    else:
        _, model_state, _, metadata = load_run_checkpoint("generate", "--checkpoint", args.checkpoint)
        run_info = metadata["trainer"]["run_info"]
        model = model_from_run_info(run_info, model_state)  # GPTModel, Llama3Model or Qwen3Model (its "arch")
        tokenizer = make_tokenizer(run_info["tokenizer"])
    model.eval()
    report_kernels(args)
    eos_id = end_of_text_id(tokenizer, model)  # GPT-2's <|endoftext|> ends a text
    if args.temperature == 0 and (args.top_k is not None or args.top_p is not None):
        print("note: --top-k and --top-p only matter when sampling; at --temperature 0 (the default) the most "
              "likely token is always taken. Add e.g. --temperature 1.0", file=sys.stderr)
    if args.prompt == "":
        fail("generate", "--prompt is empty: give the text to continue (at least one character)")
    try:
        ids = text_to_token_ids(args.prompt, tokenizer) if args.model is None or arch == "gpt2" else \
            np.asarray(tokenizer.encode(args.prompt), dtype=np.int64)[None, :]  # a Llama 3 / Qwen3 tokenizer
    except KeyError as error:  # a character outside a char tokenizer's alphabet
        fail("generate", f"--prompt: {error.args[0]}")
    context_length = model.cfg.context_length
    if ids.shape[1] > context_length:
        print(f"note: the prompt has {ids.shape[1]} tokens, more than the model's context of {context_length}: "
              f"the model sees only its last {context_length} tokens", file=sys.stderr)
    try:
        tokens = stream_generate(model, ids, max_new_tokens=args.max_new_tokens, context_size=context_length,
                                 temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, eos_id=eos_id,
                                 rng=Generator().manual_seed(args.seed), use_cache=not args.no_cache)
    except ValueError as error:  # the message names the library's argument: name the flag instead
        fail("generate", flag_names(str(error)))
    print(args.prompt, end="", flush=True)
    try:
        for piece in decode_stream(tokens, tokenizer):  # (1,) ids of a batch of one, as they come
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except FloatingPointError as error:  # NaN weights: say so instead of a traceback
        print(file=sys.stderr)
        fail("generate", str(error))
    print()
    return 0

