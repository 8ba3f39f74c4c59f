"""`minigpt download`: OpenAI's GPT-2 weights into the local cache (book ch. 5.5)."""

from __future__ import annotations

from minigpt.cli.common import fail


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("download", help="download OpenAI's GPT-2 weights into the cache",
                                   description="Download config.json and model.safetensors of a GPT-2 size from the Hugging Face "
                                   "hub ($HF_ENDPOINT, default https://huggingface.co) into $MINIGPT_HOME (default "
                                   "~/.cache/minigpt), verifying size and SHA-256; an interrupted download resumes.")
    parser.add_argument("name", help="gpt2-small (124M), gpt2-medium (355M), gpt2-large (774M), gpt2-xl (1558M), or a hub repo id")


def run(args) -> int:
    """Run `minigpt download`."""
    from minigpt.hub import DownloadError, download

    try:
        folder = download(args.name)
    except (DownloadError, ValueError) as error:
        fail("download", str(error))
    print(f"{args.name}: {folder}")
    return 0
