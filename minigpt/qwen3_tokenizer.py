"""Qwen3's tokenizer and chat template: ``Qwen3Tokenizer`` (the book's class).

The book's Qwen3 code (``ch05/11_qwen3/standalone-qwen3*.ipynb`` and
``pkg/llms_from_scratch/qwen3.py``) reads Qwen3's ``tokenizer.json`` with the Hugging Face
``tokenizers`` library and wraps it with Qwen's chat template; here the file is read by
``minigpt.hf_tokenizer.HFTokenizer`` (byte-level BPE with merges, an NFC normalizer, a split
pattern and added tokens; see that module), under the same class name, arguments and methods.

The chat template (Qwen's ChatML), for one user message::

    <|im_start|>user\\n{message}<|im_end|>\\n

then, with ``add_generation_prompt``, the start of the assistant's turn: ``<|im_start|>assistant\\n``,
followed, when thinking is off (``add_thinking=False``), by an empty thinking block
``<think>\\n\\n</think>\\n\\n`` so that the model answers directly.

References: Raschka, ``pkg/llms_from_scratch/qwen3.py``, ``Qwen3Tokenizer`` (the special-token
list, the splitting, the template and the choice of end-of-sequence token); Qwen's
``tokenizer_config.json`` chat template (ChatML with ``<think>`` blocks).
"""

from __future__ import annotations

import re
from pathlib import Path

from minigpt.hf_tokenizer import HFTokenizer

__all__ = ["Qwen3Tokenizer"]


class Qwen3Tokenizer:
    """Qwen3's tokenizer from its ``tokenizer.json``, with the chat template (the book's class).

    Example (with Qwen's file):
        >>> tokenizer = Qwen3Tokenizer("Qwen3-0.6B/tokenizer.json", repo_id="Qwen/Qwen3-0.6B",
        ...                            add_generation_prompt=True)            # doctest: +SKIP
        >>> tokenizer.decode(tokenizer.encode("Hi"))                            # doctest: +SKIP
        '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n'

    Args:
        tokenizer_file_path: path to ``tokenizer.json``.
        repo_id: a Hugging Face repository (``"Qwen/Qwen3-0.6B"``) to download the file from when
            it is missing (``minigpt.hub.download_file``); its name also picks the
            end-of-sequence token: ``<|im_end|>`` for chat models, ``<|endoftext|>`` for ``Base``.
        apply_chat_template: ``encode`` wraps text in the template by default.
        add_generation_prompt: the template ends with the assistant's header.
        add_thinking: leave the thinking block to the model (no empty ``<think></think>``).

    Attributes:
        pad_token_id: id of ``<|endoftext|>``. eos_token_id: id of the end-of-sequence token.

    Raises:
        FileNotFoundError: no file and no ``repo_id``. minigpt.hub.DownloadError: the download
            failed. ValueError: the file is not a byte-level BPE tokenizer.json, or has no
            ``<|endoftext|>`` token.
    """

    _SPECIALS = [
        "<|endoftext|>",
        "<|im_start|>", "<|im_end|>",
        "<|object_ref_start|>", "<|object_ref_end|>",
        "<|box_start|>", "<|box_end|>",
        "<|quad_start|>", "<|quad_end|>",
        "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
        "<think>", "</think>",
    ]
    # Text is cut around anything shaped like a special token before encoding, as the book does.
    _SPLIT_RE = re.compile(r"(<\|[^>]+?\|>|<think>|</think>)")

    def __init__(self, tokenizer_file_path="tokenizer.json", repo_id=None, apply_chat_template=True,
                 add_generation_prompt=False, add_thinking=False):
        self.apply_chat_template = apply_chat_template
        self.add_generation_prompt = add_generation_prompt
        self.add_thinking = add_thinking

        tok_file = Path(tokenizer_file_path)
        if not tok_file.is_file():
            if not repo_id:
                raise FileNotFoundError(f"tokenizer_file_path: no file at {tok_file} (pass repo_id to download it)")
            from minigpt.hub import download_file
            download_file(repo_id, tok_file.name, directory=str(tok_file.parent))
        self._tok = HFTokenizer.from_file(tok_file)
        self._special_to_id = {}
        for token in self._SPECIALS:
            token_id = self._tok.token_to_id(token)
            if token_id is not None:
                self._special_to_id[token] = token_id
        if "<|endoftext|>" not in self._special_to_id:
            raise ValueError(f"{tok_file}: has no <|endoftext|> token, so it is not a Qwen tokenizer")

        self.pad_token_id = self._special_to_id["<|endoftext|>"]
        self.eos_token_id = self.pad_token_id
        eos_token = "<|im_end|>" if repo_id and "Base" not in repo_id else "<|endoftext|>"
        if eos_token in self._special_to_id:
            self.eos_token_id = self._special_to_id[eos_token]

    def encode(self, text: str, chat_wrapped: bool | None = None) -> list[int]:
        """Token ids of ``text``, wrapped in the chat template unless ``chat_wrapped`` is False
        (None: the ``apply_chat_template`` given at construction).

        A text that is one special token (surrounding whitespace aside) is that token's id alone,
        unwrapped, as the book's class does.

        Raises:
            TypeError: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if chat_wrapped is None:
            chat_wrapped = self.apply_chat_template
        stripped = text.strip()
        if stripped in self._special_to_id and "\n" not in stripped:
            return [self._special_to_id[stripped]]
        if chat_wrapped:
            text = self._wrap_chat(text)
        ids: list[int] = []
        for part in filter(None, self._SPLIT_RE.split(text)):
            if part in self._special_to_id:
                ids.append(self._special_to_id[part])
            else:
                ids.extend(self._tok.encode(part).ids)
        return ids

    def decode(self, ids) -> str:
        """Text of ids, special tokens included (``skip_special_tokens=False``)."""
        return self._tok.decode(ids, skip_special_tokens=False)

    def _wrap_chat(self, user_msg: str) -> str:
        """The chat template around one user message (see the module docstring)."""
        text = f"<|im_start|>user\n{user_msg}<|im_end|>\n"
        if self.add_generation_prompt:
            text += "<|im_start|>assistant"
            text += "\n" if self.add_thinking else "\n<think>\n\n</think>\n\n"
        return text
