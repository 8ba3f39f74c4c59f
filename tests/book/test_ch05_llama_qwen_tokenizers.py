"""The tokenizer cells of the book's chapter-5 bonus notebooks, run on minigpt.

`ch05/07_gpt_to_llama/standalone-llama32.ipynb` (its `Tokenizer` and `ChatFormat` on tiktoken) and
`ch05/11_qwen3/standalone-qwen3.ipynb` (its `Qwen3Tokenizer` on Hugging Face `tokenizers`), typed
as the book types them (rasbt/LLMs-from-scratch, Apache-2.0) with only the import lines changed:

    import tiktoken                          ->  from minigpt import tokenizer as tiktoken
    from tiktoken.load import load_tiktoken_bpe
                                             ->  from minigpt.tokenizer import load_tiktoken_ranks as load_tiktoken_bpe
    from tokenizers import Tokenizer         ->  from minigpt.hf_tokenizer import HFTokenizer as Tokenizer

The ids must equal what the notebooks' own classes give with tiktoken and tokenizers on the
generated vocabularies (tests/fixtures/llama_qwen_tokenizers/cases.json, made with the book's
package classes, which the notebooks' cells equal line for line).
"""

import json
import os
import re
from pathlib import Path

from minigpt import tokenizer as tiktoken
from minigpt.hf_tokenizer import HFTokenizer as Tokenizer
from minigpt.tokenizer import load_tiktoken_ranks as load_tiktoken_bpe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llama_qwen_tokenizers"
CASES = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))


class LlamaTokenizer:  # the notebook's `Tokenizer` (renamed here: `Tokenizer` is Qwen's import below)
    """Thin wrapper around tiktoken that keeps track of Llama-3 special IDs."""
    def __init__(self, model_path):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(model_path)

        mergeable = load_tiktoken_bpe(model_path)

        # hard-coded from Meta's tokenizer.json
        self.special = {
            "<|begin_of_text|>": 128000,
            "<|end_of_text|>": 128001,
            "<|start_header_id|>": 128006,
            "<|end_header_id|>": 128007,
            "<|eot_id|>": 128009,
        }
        self.special.update({f"<|reserved_{i}|>": 128002 + i
                             for i in range(256)
                             if 128002 + i not in self.special.values()})

        self.model = tiktoken.Encoding(
            name=Path(model_path).name,
            pat_str=r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
                    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
                    r"|\p{N}{1,3}"
                    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
                    r"|\s*[\r\n]+"
                    r"|\s+(?!\S)"
                    r"|\s+",
            mergeable_ranks=mergeable,
            special_tokens=self.special,
        )

    def encode(self, text, bos=False, eos=False):
        ids = ([self.special["<|begin_of_text|>"]] if bos else []) \
              + self.model.encode(text)
        if eos:
            ids.append(self.special["<|end_of_text|>"])
        return ids

    def decode(self, ids):
        return self.model.decode(ids)


class ChatFormat:

    def __init__(self, tokenizer: LlamaTokenizer, *,
                 default_system="You are a helpful assistant."):
        self.tok = tokenizer
        self.default_system = default_system

    def _header(self, role):
        """Encode <|start_header_id|>role<|end_header_id|>\n\n"""
        return (
            [self.tok.special["<|start_header_id|>"]]
            + self.tok.encode(role)
            + [self.tok.special["<|end_header_id|>"]]
            + self.tok.encode("\n\n")
        )

    def encode(self, user_message, system_message=None):
        sys_msg = system_message if system_message is not None else self.default_system

        ids = [self.tok.special["<|begin_of_text|>"]]

        # system
        ids += self._header("system")
        ids += self.tok.encode(sys_msg)
        ids += [self.tok.special["<|eot_id|>"]]

        # user
        ids += self._header("user")
        ids += self.tok.encode(user_message)
        ids += [self.tok.special["<|eot_id|>"]]

        # assistant header (no content yet)
        ids += self._header("assistant")

        return ids


class Qwen3Tokenizer:
    _SPECIALS = [
        "<|endoftext|>",
        "<|im_start|>", "<|im_end|>",
        "<|object_ref_start|>", "<|object_ref_end|>",
        "<|box_start|>", "<|box_end|>",
        "<|quad_start|>", "<|quad_end|>",
        "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
        "<think>", "</think>"
    ]
    _SPLIT_RE = re.compile(r"(<\|[^>]+?\|>|<think>|</think>)")

    def __init__(self, tokenizer_file_path="tokenizer.json", repo_id=None,
                 apply_chat_template=True, add_generation_prompt=False, add_thinking=False):

        self.apply_chat_template = apply_chat_template
        self.add_generation_prompt = add_generation_prompt
        self.add_thinking = add_thinking

        tok_file = Path(tokenizer_file_path)
        self._tok = Tokenizer.from_file(str(tok_file))
        self._special_to_id = {}
        for t in self._SPECIALS:
            tid = self._tok.token_to_id(t)
            if tid is not None:
                self._special_to_id[t] = tid

        self.pad_token_id = self._special_to_id["<|endoftext|>"]
        self.eos_token_id = self.pad_token_id

        if repo_id and "Base" not in repo_id:
            eos_token = "<|im_end|>"
        else:
            eos_token = "<|endoftext|>"
        if eos_token in self._special_to_id:
            self.eos_token_id = self._special_to_id[eos_token]

    def encode(self, text, chat_wrapped=None):
        if chat_wrapped is None:
            chat_wrapped = self.apply_chat_template

        stripped = text.strip()
        if stripped in self._special_to_id and "\n" not in stripped:
            return [self._special_to_id[stripped]]

        if chat_wrapped:
            text = self._wrap_chat(text)

        ids = []
        for part in filter(None, self._SPLIT_RE.split(text)):
            if part in self._special_to_id:
                ids.append(self._special_to_id[part])
            else:
                ids.extend(self._tok.encode(part).ids)
        return ids

    def decode(self, ids):
        return self._tok.decode(ids, skip_special_tokens=False)

    def _wrap_chat(self, user_msg):
        s = f"<|im_start|>user\n{user_msg}<|im_end|>\n"
        if self.add_generation_prompt:
            s += "<|im_start|>assistant"
            if self.add_thinking:
                s += "\n"
            else:
                s += "\n<think>\n\n</think>\n\n"
        return s


def test_llama32_notebook_tokenizer_and_chat_format():
    tokenizer = LlamaTokenizer(str(FIXTURES / "llama3-style.tiktoken"))
    chat_tokenizer = ChatFormat(tokenizer)
    for text, expected in zip(CASES["strings"], CASES["tiktoken"]["bos_eos"]):
        if expected is not None:
            assert tokenizer.encode(text, bos=True, eos=True) == expected, text
            assert tokenizer.decode(expected[1:-1]) == text
    for message, expected in zip(CASES["chat_messages"], CASES["tiktoken"]["chat"]):
        if expected is not None:
            assert chat_tokenizer.encode(message) == expected
    assert chat_tokenizer.encode("Hi", system_message="Be brief.") == CASES["tiktoken"]["chat_system"]


def test_qwen3_notebook_tokenizer():
    path = FIXTURES / "qwen3-style.tokenizer.json"
    texts = CASES["strings"] + CASES["chat_messages"]
    for options, expected in CASES["book_qwen3"].items():
        if not options.startswith("{"):
            continue
        tokenizer = Qwen3Tokenizer(tokenizer_file_path=path, **json.loads(options))
        assert [tokenizer.encode(text) for text in texts] == expected["encode"], options
        assert tokenizer.eos_token_id == expected["eos_token_id"]
    tokenizer = Qwen3Tokenizer(tokenizer_file_path=path)
    assert [tokenizer.decode(ids) for ids in CASES["book_qwen3"]["{}"]["encode"]] == CASES["book_qwen3"]["decode"]
