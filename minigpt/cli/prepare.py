"""`minigpt prepare`: tokenize a text file once into a memory-mapped token file."""

from __future__ import annotations

import os

from minigpt.cli.common import fail


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="tokenize a text file once into a memory-mapped token file",
                                   description="Tokenize INPUT with GPT-2's tokenizer into OUTPUT (raw uint16 ids + a JSON sidecar); "
                                   "`minigpt train --data OUTPUT` then memory-maps it, so corpora larger than memory train.")
    parser.add_argument("input", help="UTF-8 text file")
    parser.add_argument("output", help="token file to write (use the .bin suffix)")


def run(args) -> int:
    """Run `minigpt prepare`."""
    from minigpt.data import prepare
    from minigpt.tokenizer import get_encoding

    if not args.output.endswith(".bin"):
        fail("prepare", f"output {args.output!r}: use a .bin file name (train recognises token files by it)")
    if not os.path.isfile(args.input):
        fail("prepare", f"input {args.input!r}: no such file")
    if os.path.getsize(args.input) == 0:  # as `minigpt train` refuses it
        fail("prepare", f"input {args.input!r} is empty; there is nothing to tokenize")
    output_folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_folder):
        fail("prepare", f"output {args.output!r}: the folder {output_folder} does not exist")
    try:
        # prepare() refuses any output (sidecar and temporaries included) that is the input
        # under another name, before it writes anything.
        prepare(args.input, args.output, get_encoding("gpt2"))
    except ValueError as error:
        fail("prepare", str(error).replace("input_path: ", "input ").replace("output_path: ", "output: "))
    except OSError as error:  # a read-only or full folder: say which, not a bare errno
        fail("prepare", f"cannot write {args.output!r} in the folder {output_folder}: {error.strerror or error}")
    print(f"wrote {args.output}")
    return 0
