"""Generate the Llama 3 / Qwen3 tokenizer fixtures: small vocabularies in the real file formats,
and the reference libraries' ids for held-back strings.

The real tokenizer files cannot be downloaded here, so this script trains a small byte-level BPE
with the Hugging Face `tokenizers` library and writes it in both formats minigpt must read:

* `qwen3-style.tokenizer.json`: Qwen3's layout (NFC normalizer; Split with Qwen's regex, then
  ByteLevel; BPE with vocab/merges; Qwen's added tokens, special and not);
* `llama3-style.tokenizer.json`: the same vocabulary as Hugging Face writes Llama 3 (Llama 3's
  regex, no normalizer, `ignore_merges: true`, Llama's added tokens, its post-processor that
  puts `<|begin_of_text|>` first), with shuffled merges so that `ignore_merges` matters;
* `shuffled-merges.tokenizer.json`: the Qwen-style file with its merges in a random order, so a
  merge's priority and its token's id disagree (what ranks the merges must be the merge list),
  and three odd added tokens for the decoder's rules;
* `gpt2-style.tokenizer.json`: the vocabulary as GPT-2's tokenizer.json is laid out (a lone
  ByteLevel pre-tokenizer with `use_regex: true`, no normalizer);
* `llama3-style.tiktoken`: the vocabulary as a tiktoken rank file (`base64(token bytes) rank`),
  the format of Meta's `original/tokenizer.model`.

Then it records, for held-back strings (unicode, whitespace runs, numbers, contractions,
special-token text, code; none is in the training text), the ids given by the reference code:
`tokenizers.Tokenizer.encode(text).ids` and `.decode(ids)` for the JSON files, and the book's own
classes (`pkg/llms_from_scratch`: `Llama3Tokenizer` + `ChatFormat` on tiktoken,
`Qwen3Tokenizer` on tokenizers) for the rank file and the chat templates.

Run once, in a side venv (never a dependency of minigpt):

    python3 -m venv /tmp/ref-tok && /tmp/ref-tok/bin/pip install tokenizers tiktoken numpy torch==2.13.0 requests
    /tmp/ref-tok/bin/python scripts/make_tokenizer_fixtures.py --book /work/book/pkg

(torch and requests only because the book's modules import them.)
"""

import argparse
import base64
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "llama_qwen_tokenizers"

QWEN3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen3's added tokens, in its order; (content, special). Qwen marks the tool and think tags non-special.
QWEN3_ADDED = [(t, True) for t in [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]] + [
    ("<tool_call>", False), ("</tool_call>", False)] + [(t, True) for t in [
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]] + [
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False)]

EXTRA_TRAINING_TEXT = """
The quick brown fox's den wasn't far: they'd walked 12,345 steps (about 9.8 km) in 2024.
Café, naïve, über, façade — Ελληνικά κείμενα, русские слова, 中文的句子和字符, 日本語の文章です, 한국어 문장.
def tokenize(text: str) -> list[int]:
    for index, value in enumerate(text.split()):
        if value.isdigit():
            yield int(value) * 1000
    return [ord(c) for c in text]  # comment
<|im_start|>system
You are a helpful assistant.<|im_end|>
Emoji 🙂🚀✨ and symbols ∀x ∈ ℝ: x² ≥ 0.\t\tTabs\r\nWindows lines\n\n\n   Indented.
"""

HELD_BACK = [
    "", " ", "   ", "\n", "\n\n\n", "\t", " \t\n ", "\r\n", "  \r\n\r\n  x", "a", " a", "a ", "hello world",
    "Hello, World!", "trailing spaces   ", "   leading spaces", "multiple   spaces    between     words",
    "it's", "It'S", "they'll've", "DON'T", "I'M HERE", "we'Re", "y'all", "rock 'n' roll", "''", "'s",
    "1234567890", "3.14159", "1,000,000", "-42", "2026-11-29T19:10:40Z", "0x1F600", "12 345 6789", "٣٤٥ ৪৫৬",
    "    indented code\n\tdef f(x):\n\t\treturn x**2  # square\n",
    "if (a && b) { return c->d[0]; } // done\n",
    "naïve café résumé", "Straße", "combining e\u0301 vs é", "Ελληνικά", "русский текст", "中文字符测试",
    "日本語のテキスト", "한국어", "عربى", "עברית", "हिन्दी", "emoji 😀🎉👍🏽",
    "👨\u200d👩\u200d👧\u200d👦 family", "flags 🇮🇳🇺🇸", "∑∫√∞≠≤≥", "zero\u200bwidth", "non\xa0breaking",
    "ideographic\u3000space", "line\u2028separator", "next\x85line", "\ufeffBOM", "control\x00char\x07",
    "unit\x1fsep\x1c", "Ⅻ roman ½ fraction ²",
    "<|endoftext|>", "text<|endoftext|>more", "<|im_start|>user\nHi<|im_end|>", "<think>\nhmm\n</think>\n\nOK",
    "<tool_call>{\"a\": 1}</tool_call>", "<|endoftext", "|>", "<|unknown_token|>", "<|im_start|><|im_end|>",
    "<|begin_of_text|>", "a<|eot_id|>b", "<|start_header_id|>user<|end_header_id|>",
    "https://example.com/path?query=1&b=2#frag", "user@example.com",
    "The Verdict, a short story, was never in the training text of this tokenizer: 42 times!",
    "x" * 300, "9" * 100, " " * 50 + "y", "!!!???...;;;", "a\n\nb\n \nc", "x y z", "ĠQuestion",
]

CHAT_MESSAGES = ["What is 1+1?", "Tell me a joke.\nIn two lines.", "naïve 😀 <|im_end|> text"]
DECODE_CASES = [[0, 1, 2], [200, 201], [5], []]  # plus ids of partial multi-byte characters below


def train(tokenizers_module, texts, vocab_size):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def add_tokens(tokenizer, added):
    from tokenizers import AddedToken
    for content, special in added:
        token = AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])


def variant(document: dict, **changes) -> dict:
    document = json.loads(json.dumps(document))
    for key, value in changes.items():
        if key == "pattern":
            document["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": value}
        elif key == "normalizer":
            document["normalizer"] = value
        elif key == "merges":
            document["model"]["merges"] = value
        elif key == "ignore_merges":
            document["model"]["ignore_merges"] = value
        elif key == "added_tokens":
            document["added_tokens"] = value
        elif key == "post_processor":
            document["post_processor"] = value
        elif key == "pre_tokenizer":
            document["pre_tokenizer"] = value
    return document


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", default="/work/book/pkg", help="the book's pkg/ folder (llms_from_scratch)")
    parser.add_argument("--vocab-size", type=int, default=1500, help="tokens learnt, with the 256 bytes")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.book)
    import tiktoken
    import tokenizers
    from tokenizers import Tokenizer
    from llms_from_scratch.llama3 import ChatFormat, Llama3Tokenizer
    from llms_from_scratch.qwen3 import Qwen3Tokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    training = (ROOT / "tests" / "fixtures" / "the-verdict.txt").read_text(encoding="utf-8") + EXTRA_TRAINING_TEXT
    assert not any(text in training for text in HELD_BACK if len(text) > 12), "a held-back string is in the training text"
    base = train(tokenizers, [training], args.vocab_size)
    vocab_size = base.get_vocab_size()
    add_tokens(base, QWEN3_ADDED)
    qwen = json.loads(base.to_str())

    llama_added = [{"id": vocab_size + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                    "normalized": False, "special": True}
                   for i, c in enumerate(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                          "<|end_header_id|>", "<|eot_id|>"])]
    shuffled = list(qwen["model"]["merges"])
    random.Random(0).shuffle(shuffled)
    documents = {
        "qwen3-style": qwen,
        # Shuffled merges here too, so that ignore_merges changes results (a whole-piece token wins).
        "llama3-style": variant(qwen, pattern=LLAMA3_PATTERN, normalizer=None, ignore_merges=True, added_tokens=llama_added,
                                merges=shuffled, post_processor=_llama_template(vocab_size)),
        "shuffled-merges": _with_odd_added_tokens(variant(qwen, merges=shuffled)),
        # GPT-2's layout: one ByteLevel pre-tokenizer that splits with its own (GPT-2's) regex.
        "gpt2-style": variant(qwen, normalizer=None, pre_tokenizer={
            "type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}),
    }
    cases = {"strings": HELD_BACK, "tokenizer_json": {}}
    for name, document in documents.items():
        path = OUT / f"{name}.tokenizer.json"
        path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        reference = Tokenizer.from_file(str(path))
        ids = [reference.encode(text).ids for text in HELD_BACK]
        without = [reference.encode(text, add_special_tokens=False).ids for text in HELD_BACK]
        decode_cases = DECODE_CASES + [ids_[:k] for ids_ in ids for k in (1, 2) if len(ids_) > k][:40]
        cases["tokenizer_json"][name] = {
            "ids": ids,
            "ids_without_special": without,
            "decode_ids": decode_cases,
            "decoded": [reference.decode(d, skip_special_tokens=False) for d in decode_cases],
            "decoded_skip_special": [reference.decode(d, skip_special_tokens=True) for d in ids],
            "vocab_size": reference.get_vocab_size(),
        }

    # The tiktoken rank file: the ordinary tokens' bytes and ids.
    byte_decoder = {c: b for b, c in zip(range(256), _bytes_to_unicode())}
    ranks = {bytes(byte_decoder[c] for c in token): token_id for token, token_id in qwen["model"]["vocab"].items()}
    rank_path = OUT / "llama3-style.tiktoken"
    rank_path.write_bytes(b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
                                   for token, rank in sorted(ranks.items(), key=lambda item: item[1])))
    llama = Llama3Tokenizer(str(rank_path))
    chat = ChatFormat(llama)
    cases["tiktoken"] = {
        "ordinary": [llama.model.encode_ordinary(text) for text in HELD_BACK],
        "allow_all": [llama.model.encode(text, allowed_special="all") for text in HELD_BACK],
        "bos_eos": [llama.encode(text, bos=True, eos=True) if not _has_special(text, llama) else None for text in HELD_BACK],
        "chat": [chat.encode(message) if not _has_special(message, llama) else None for message in CHAT_MESSAGES],
        "chat_system": chat.encode("Hi", system_message="Be brief."),
        "special": llama.special,
    }
    qwen_path = OUT / "qwen3-style.tokenizer.json"
    book_qwen = {}
    for options in [dict(), dict(apply_chat_template=False), dict(add_generation_prompt=True),
                    dict(add_generation_prompt=True, add_thinking=True)]:
        tokenizer = Qwen3Tokenizer(str(qwen_path), **options)
        key = json.dumps(options, sort_keys=True)
        book_qwen[key] = {"encode": [tokenizer.encode(text) for text in HELD_BACK + CHAT_MESSAGES],
                          "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    chat_model = Qwen3Tokenizer(str(qwen_path), repo_id="Qwen/Qwen3-0.6B")  # the file exists: no download
    book_qwen["repo_id"] = {"eos_token_id": chat_model.eos_token_id}
    book_qwen["decode"] = [Qwen3Tokenizer(str(qwen_path)).decode(ids) for ids in book_qwen["{}"]["encode"]]
    cases["book_qwen3"] = book_qwen
    cases["chat_messages"] = CHAT_MESSAGES
    cases["versions"] = {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__}
    (OUT / "cases.json").write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {OUT}: vocab {vocab_size} + {len(QWEN3_ADDED)} added; tokenizers {tokenizers.__version__}, "
          f"tiktoken {tiktoken.__version__}")


def _with_odd_added_tokens(document: dict) -> dict:
    """Added tokens that test the decoder's rules: one already in the vocabulary ("é", byte 0xE9's
    character), one with a space (not a byte-level character: decoded as UTF-8), one spelled in
    byte-level characters ("ĠQ": decoded as " Q")."""
    from tokenizers import AddedToken, Tokenizer
    tokenizer = Tokenizer.from_str(json.dumps(document))
    tokenizer.add_tokens([AddedToken(text, normalized=False) for text in ("é", "x y", "ĠQ")])
    return json.loads(tokenizer.to_str())


def _llama_template(bos_id: int) -> dict:
    """Llama 3's post-processor as Hugging Face writes it: ByteLevel, then <|begin_of_text|> $A."""
    return {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos_id], "tokens": ["<|begin_of_text|>"]}}},
    ]}


def _has_special(text, llama) -> bool:
    return any(token in text for token in llama.special)


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table (the characters, in byte order)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 256
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(extra)
            extra += 1
    return [table[byte] for byte in range(256)]


if __name__ == "__main__":
    main()
