"""PyTorch eager reference scripts for minigpt's benchmarks (never imported by minigpt itself).

These files run only under a separate Python that has torch (`--torch-python`, e.g. a venv made
with `pip install torch==2.13.0 numpy`); the benchmarks start them as subprocesses and compare
their timings with minigpt's, side by side on the same machine. `gpt.py` is the book's chapter-4
GPT written in plain eager PyTorch, with the chapter-4 bonus KV cache.
"""

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))


def script_path(name: str) -> str:
    """The path of a reference script in this folder, e.g. `script_path("gpt.py")`."""
    return os.path.join(FOLDER, name)
