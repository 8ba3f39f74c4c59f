"""`minigpt chat`: talk to the assistant you fine-tuned (book chapter 7).

    minigpt finetune instruct --checkpoint runs/tiny --out runs/assistant
    minigpt chat --checkpoint runs/assistant
    >>> Name the author of 'Pride and Prejudice'.
    The author of 'Pride and Prejudice' is Jane Austen.

Each line you type is an instruction: it is wrapped in the book's prompt (`format_input`) followed
by the response header ("### Response:"), exactly the text the model was fine-tuned on, and the
answer is streamed token by token with the KV cache until the end-of-text token. Ctrl-D (end of
input) or Ctrl-C quits. Lines can also be piped in: `echo "Name a color." | minigpt chat --checkpoint DIR`.
"""

from __future__ import annotations

import sys

from autograd.random import Generator
from minigpt.cli.common import (add_threads_argument, end_of_text_id, fail, flag_names, kernels_note, load_run_checkpoint,
                                make_tokenizer)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat", help="talk to an instruction-tuned checkpoint (book ch. 7)",
        description="An interactive prompt: every line is an instruction, wrapped in the book's Alpaca-style prompt; "
        "the answer streams token by token. Ctrl-D or Ctrl-C quits. Works with piped input too.")
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="a run directory of `minigpt finetune instruct` (or of `minigpt train`)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer at most (default 256)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default, as the book's answers); above 0 samples")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="sample only from the smallest set of tokens with this total probability")
    parser.add_argument("--seed", type=int, default=123, help="seed of the sampling generator")
    add_threads_argument(parser)


def chat_prompt(message: str) -> str:
    """The text the model continues for one chat message: the book's prompt + the response header."""
    from minigpt.finetune.instruction import RESPONSE_HEADER, format_input

    return format_input({"instruction": message, "input": ""}) + RESPONSE_HEADER


def _answer(model, tokenizer, message: str, args, rng) -> None:
    """Stream the model's answer to one message to stdout."""
    from minigpt.generate import decode_stream, stream_generate, text_to_token_ids

    ids = text_to_token_ids(chat_prompt(message), tokenizer)  # (1, T)
    context_length = model.cfg.context_length
    if ids.shape[1] > context_length:  # as `minigpt generate`: nothing cut without a word
        print(f"note: this message in the book's prompt has {ids.shape[1]} tokens, more than the model's context of "
              f"{context_length}: the model sees only its last {context_length} tokens (the start is cut)", file=sys.stderr)
    tokens = stream_generate(model, ids, max_new_tokens=args.max_new_tokens, context_size=context_length,
                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             eos_id=tokenizer.eot_token, rng=rng)
    started = False
    try:
        for piece in decode_stream(tokens, tokenizer):
            if not started:  # the answer starts at its first visible character, as `extract_response` strips it
                piece = piece.lstrip()
                started = bool(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        tokens.close()
    sys.stdout.write("\n")
    sys.stdout.flush()


def run(args) -> int:
    """Run `minigpt chat`: read instructions from stdin until end of input or Ctrl-C."""
    from minigpt.architectures import model_from_run_info

    if args.max_new_tokens < 1:
        fail("chat", f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    _, model_state, _, metadata = load_run_checkpoint("chat", "--checkpoint", args.checkpoint)
    run_info = metadata["trainer"]["run_info"]
    model = model_from_run_info(run_info, model_state)  # GPTModel, Llama3Model or Qwen3Model (its "arch")
    model.eval()
    tokenizer = make_tokenizer(run_info["tokenizer"])
    if end_of_text_id(tokenizer, model) is None:
        fail("chat", f"--checkpoint {args.checkpoint}: its model ({run_info['tokenizer']['name']} tokenizer, vocabulary of "
             f"{model.cfg.vocab_size:,} ids) has no end-of-text token to end an answer with; chat needs a model with "
             "GPT-2's tokenizer, fine-tuned by `minigpt finetune instruct`")
    rng = Generator().manual_seed(args.seed)
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    if run_info.get("task") != "instruct":
        print(f"note: {args.checkpoint} was not instruction-tuned (`minigpt finetune instruct`); its answers may ramble",
              file=sys.stderr)
    print(f"minigpt chat: {args.checkpoint}, {model.num_parameters():,} parameters{kernels_note(args)}. Type an instruction; "
          "Ctrl-D or Ctrl-C quits.", file=sys.stderr)
    try:
        while True:
            try:
                message = input(">>> " if interactive else "")
            except EOFError:
                break
            if message.strip():
                try:
                    _answer(model, tokenizer, message.strip(), args, rng)
                except ValueError as error:  # e.g. a sampling flag out of range: named by the library
                    fail("chat", flag_names(str(error)))
                except FloatingPointError as error:  # NaN weights: say so instead of a traceback
                    sys.stdout.write("\n")  # end the partial answer
                    sys.stdout.flush()
                    if not interactive:  # a pipe's remaining lines would all fail the same way
                        fail("chat", str(error))
                    print(f"minigpt chat: error: {error}", file=sys.stderr)  # the user may try again or quit
    except KeyboardInterrupt:
        sys.stdout.write("\n")
    if interactive:
        print("bye", file=sys.stderr)
    return 0
