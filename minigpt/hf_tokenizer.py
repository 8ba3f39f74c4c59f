"""Hugging Face ``tokenizer.json`` files of byte-level BPE models: ``HFTokenizer.from_file``.

Qwen3 (and the Hugging Face copies of Llama 3, GPT-2 and most open models since) ship their
tokenizer as one JSON file written by the ``tokenizers`` library. For a byte-level BPE model it
describes the same three steps as GPT-2's tokenizer (``minigpt.tokenizer``), plus two:

0. **Added tokens** (``added_tokens``: ``<|im_start|>``, ``<|endoftext|>``, ``<think>``...) are
   cut out of the text first, wherever they appear, and become their own ids; the rest of the
   text goes through steps 1-4. (Unlike tiktoken, nothing has to be "allowed".)
1. **Normalization** (``normalizer``): Qwen's is NFC, so ``"e" + U+0301`` and ``"é"`` encode alike.
2. **Pre-tokenization** (``pre_tokenizer``): a ``Split`` with a regular expression whose matches
   (and any text between them) become pieces, then ``ByteLevel``, which writes each piece's UTF-8
   bytes as GPT-2's printable characters (``minigpt.tokenizer.bytes_to_unicode``: space is ``Ġ``).
3. **BPE** (``model``): ``vocab`` maps each token, in those characters, to its id, and
   ``merges`` lists the merges in priority order. A piece starts as its bytes; the adjacent pair
   whose merge comes first in the list is joined, again and again (ties: leftmost), until no
   adjacent pair is a merge. NOTE: the priority is the *merge's* index, not the merged token's id
   as in tiktoken; for most vocabularies the two orders agree, but not for all, so this module
   ranks by merge. With ``ignore_merges`` (Llama 3's file) a piece that is itself in the vocabulary
   is that token without merging.
4. **Decoding** (``decoder``: ``ByteLevel``): the tokens' characters back to bytes, then UTF-8
   (invalid sequences become U+FFFD).

5. **Post-processing** (``post_processor``): ``TemplateProcessing`` adds fixed tokens around a
   text (Llama 3's file: ``<|begin_of_text|>`` first) when ``encode`` adds special tokens.

Only what byte-level BPE files use is supported; any other component (a WordPiece model, a
Metaspace pre-tokenizer, ``add_prefix_space``, an added token with ``lstrip``...) raises a
ValueError that names the field, rather than encoding differently from the ``tokenizers`` library.

References: Hugging Face ``tokenizers`` (``tokenizers/src/models/bpe/word.rs``: merge by rank,
leftmost first; ``pre_tokenizers/split.rs``, ``byte_level.rs``; ``added_vocabulary.rs``; the
``tokenizer.json`` serialization), whose ids the tests match; Sennrich et al. 2016 (BPE);
Radford et al. 2019 (byte-level BPE).
"""

from __future__ import annotations

import gc
import json
import unicodedata
from itertools import chain

import regex

from minigpt.tokenizer import GPT2_SPLIT_PATTERN, bytes_to_unicode
from minigpt.tokenizer_base import Tokenizer, check_text, merge_by_rank

__all__ = ["HFTokenizer", "HFEncoding", "load_tokenizer_json"]

# The pattern `ByteLevel(use_regex=true)` splits with (GPT-2's, as the tokenizers library writes it).
_BYTE_LEVEL_PATTERN = GPT2_SPLIT_PATTERN

_CACHE_LIMIT = 1_000_000  # distinct pieces kept, as minigpt.tokenizer's cache


def _unsupported(path, field: str, value) -> ValueError:
    return ValueError(f"{path}: {field} = {json.dumps(value)[:200]} is not supported (minigpt reads byte-level BPE "
                      "tokenizer.json files: Split + ByteLevel pre-tokenizers, NFC or no normalizer)")


def _split_pattern(path, pre_tokenizer) -> str:
    """The regular expression of the pre-tokenizer (Sequence[Split, ByteLevel] or ByteLevel alone)."""
    if pre_tokenizer is None:
        raise _unsupported(path, "pre_tokenizer", None)
    steps = pre_tokenizer["pretokenizers"] if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    pattern = None
    for step in steps:
        kind = step.get("type")
        if kind == "Split":
            if step.get("behavior") != "Isolated" or step.get("invert") or pattern is not None:
                raise _unsupported(path, "pre_tokenizer Split", step)
            given = step["pattern"]
            pattern = given["Regex"] if "Regex" in given else regex.escape(given["String"])
        elif kind == "ByteLevel":
            if step.get("add_prefix_space"):
                raise _unsupported(path, "pre_tokenizer ByteLevel add_prefix_space", True)
            if step.get("use_regex", True):
                if pattern is not None:
                    raise _unsupported(path, "pre_tokenizer (two regular expressions)", pre_tokenizer)
                pattern = _BYTE_LEVEL_PATTERN
            if step is not steps[-1]:
                raise _unsupported(path, "pre_tokenizer (ByteLevel before another step)", pre_tokenizer)
        else:
            raise _unsupported(path, "pre_tokenizer", step)
    if steps[-1].get("type") != "ByteLevel":
        raise _unsupported(path, "pre_tokenizer (no ByteLevel step)", pre_tokenizer)
    return pattern


def _normalizer(path, normalizer) -> bool:
    """True for NFC, False for none; anything else raises."""
    if normalizer is None:
        return False
    steps = normalizer["normalizers"] if normalizer.get("type") == "Sequence" else [normalizer]
    if [step.get("type") for step in steps] == ["NFC"]:
        return True
    if not steps:
        return False
    raise _unsupported(path, "normalizer", normalizer)


def _template(path, post_processor) -> tuple[list[int], list[int]]:
    """The ids a post-processor puts before and after a single text (``TemplateProcessing``'s
    ``single``, e.g. Llama 3's ``<|begin_of_text|> $A``); ``ByteLevel`` adds none."""
    if post_processor is None:
        return [], []
    steps = post_processor["processors"] if post_processor.get("type") == "Sequence" else [post_processor]
    before, after, seen_text = [], [], False
    for step in steps:
        if step.get("type") == "ByteLevel":
            continue
        if step.get("type") != "TemplateProcessing":
            raise _unsupported(path, "post_processor", step)
        for item in step["single"]:
            if "Sequence" in item:
                seen_text = True
            else:
                ids = step["special_tokens"][item["SpecialToken"]["id"]]["ids"]
                (after if seen_text else before).extend(ids)
    return before, after


def load_tokenizer_json(path) -> dict:
    """Read and check a byte-level BPE ``tokenizer.json``; returns its parts in plain form.

    Returns:
        dict with ``vocab`` (token str -> id), ``merges`` (list of (str, str) in priority
        order), ``pattern`` (the split regex), ``nfc`` (bool), ``ignore_merges`` (bool) and
        ``added_tokens`` (list of dicts with ``id``, ``content``, ``special``), ``template`` (the
        ids the post-processor adds before and after a text).

    Raises:
        FileNotFoundError: no file. ValueError: not JSON, not a BPE model, or a component this
        module does not implement (the message names it).
    """
    with open(path, encoding="utf-8") as file:
        try:
            document = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a JSON file ({error})") from None
    model = document.get("model") or {}
    if model.get("type") != "BPE":
        raise _unsupported(path, "model.type", model.get("type"))
    for field, plain in (("dropout", None), ("continuing_subword_prefix", None), ("end_of_word_suffix", None),
                         ("byte_fallback", False)):
        if model.get(field) not in (plain, "", False):
            raise _unsupported(path, f"model.{field}", model.get(field))
    decoder = document.get("decoder")
    if decoder is not None and decoder.get("type") != "ByteLevel":
        raise _unsupported(path, "decoder", decoder)
    for token in document.get("added_tokens", []):
        if token.get("lstrip") or token.get("rstrip") or token.get("single_word"):
            raise _unsupported(path, f"added token {token['content']!r} lstrip/rstrip/single_word", True)
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
    return {
        "vocab": model["vocab"],
        "merges": merges,
        "pattern": _split_pattern(path, document.get("pre_tokenizer")),
        "nfc": _normalizer(path, document.get("normalizer")),
        "ignore_merges": bool(model.get("ignore_merges", False)),
        "added_tokens": document.get("added_tokens", []),
        "template": _template(path, document.get("post_processor")),
    }


class _PieceCache(dict):
    """dict from a piece to its ids, merging a piece on first use (``__missing__``), so that
    encoding is one ``map(cache.__getitem__, pieces)`` (as ``minigpt.tokenizer``'s cache)."""

    def __init__(self, encode_piece):
        super().__init__()
        self.encode_piece = encode_piece

    def __missing__(self, piece: str) -> tuple[int, ...]:
        ids = self[piece] = self.encode_piece(piece)
        return ids


class HFEncoding:
    """What ``HFTokenizer.encode`` returns, as ``tokenizers.Encoding``: ``ids`` and ``tokens``.

    Attributes:
        ids: list of int token ids.
    """

    def __init__(self, ids: list[int], tokenizer: "HFTokenizer"):
        self.ids = ids
        self._tokenizer = tokenizer

    @property
    def tokens(self) -> list[str]:
        """Each id's token string (byte-level characters: ``"Ġworld"``; added tokens as text)."""
        return [self._tokenizer.id_to_token(token_id) for token_id in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"HFEncoding(num_tokens={len(self.ids)}, ids={self.ids[:8]}{'...' if len(self.ids) > 8 else ''})"


class HFTokenizer(Tokenizer):
    """A byte-level BPE tokenizer read from a Hugging Face ``tokenizer.json`` (the module's steps).

    Build it with ``HFTokenizer.from_file(path)``; it has the ``tokenizers`` library's
    ``Tokenizer`` API, so the book's notebooks run with ``from minigpt.hf_tokenizer import
    HFTokenizer as Tokenizer``. ``encode(text).ids`` equals the library's, and
    ``decode(ids, skip_special_tokens=False)`` its ``decode``; ``n_vocab`` and
    ``decode_tokens_bytes`` come from ``minigpt.tokenizer_base.Tokenizer``.

    Args:
        vocab: token (byte-level characters) -> id; all 256 byte characters must be in it.
        merges: the merges, ``(left token, right token)``, first = highest priority.
        pattern: the pre-tokenizer's regular expression.
        added_tokens: dicts with ``id``, ``content`` and ``special`` (bool).
        nfc: normalize text to NFC before pre-tokenizing (not added tokens).
        ignore_merges: a piece that is a whole token of the vocabulary is taken as is.
        template: (ids before, ids after) a text when ``encode`` adds special tokens (the
            post-processor's: ``<|begin_of_text|>`` before, for Llama 3's file; none for Qwen's).

    Raises:
        ValueError: a byte character missing from ``vocab``, a merge whose parts or result are
            not in it, or two tokens with one id.
    """

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], pattern: str, added_tokens=(),
                 nfc: bool = False, ignore_merges: bool = False, template: tuple[list, list] = ([], [])):
        byte_of_character = {character: byte for byte, character in bytes_to_unicode().items()}
        missing = [character for character in byte_of_character if character not in vocab]
        if missing:
            raise ValueError(f"vocab lacks the byte-level characters {missing[:10]} (of {len(missing)})")
        self._pattern = regex.compile(pattern)
        self.pattern, self.nfc, self.ignore_merges = pattern, nfc, ignore_merges
        self._before, self._after = list(template[0]), list(template[1])

        def token_bytes(token: str) -> bytes:
            # The ByteLevel decoder's rule, for added tokens too: each character back to its byte
            # when all of them are byte-level characters ("ĠQ" -> b" Q"), else the token's UTF-8.
            if all(character in byte_of_character for character in token):
                return bytes(byte_of_character[character] for character in token)
            return token.encode("utf-8")

        # id -> the token's bytes (what the ByteLevel decoder makes of it); None: no such id.
        size = max([*vocab.values(), *(token["id"] for token in added_tokens)]) + 1
        decoder: list[bytes | None] = [None] * size
        for token, token_id in vocab.items():
            if decoder[token_id] is not None:
                raise ValueError(f"tokens {decoder[token_id]!r} and {token!r} both have id {token_id}")
            decoder[token_id] = token_bytes(token)
        self._token_to_id = dict(vocab)
        self._id_to_token: dict[int, str] = {token_id: token for token, token_id in vocab.items()}
        self._added = {token["content"]: token["id"] for token in added_tokens}
        self._special_ids = {token["id"] for token in added_tokens if token.get("special")}
        for content, token_id in self._added.items():
            # An added token may also be in the vocabulary under the same id (Qwen's are not).
            self._token_to_id[content] = token_id
            self._id_to_token[token_id] = content
            decoder[token_id] = token_bytes(content)
        self._decoder = decoder
        self._special_tokens = self._added  # the base class's name: text -> id of tokens cut out first
        # Longest first, so a token that is a prefix of another never wins (leftmost-longest match).
        alternatives = "|".join(regex.escape(text) for text in sorted(self._added, key=len, reverse=True))
        self._added_pattern = regex.compile(f"({alternatives})") if alternatives else None

        # BPE tables: the id of each byte; (left id, right id) -> merge priority; priority -> new id.
        self._byte_ids = [vocab[bytes_to_unicode()[byte]] for byte in range(256)]
        self._bytes_to_id = {token_bytes(token): token_id for token, token_id in vocab.items()}  # the model's vocabulary only
        self._merge_rank: dict[tuple[int, int], int] = {}
        self._merge_result: list[int] = []
        for left, right in merges:
            try:
                pair, merged = (vocab[left], vocab[right]), vocab[left + right]
            except KeyError:
                raise ValueError(f"merge {left!r} {right!r}: the tokens or their join are not in vocab") from None
            if pair not in self._merge_rank:  # a repeated merge keeps its first (higher) priority
                self._merge_rank[pair] = len(self._merge_result)
                self._merge_result.append(merged)
        self._cache = _PieceCache(self._encode_piece)

    @classmethod
    def from_file(cls, path) -> "HFTokenizer":
        """Read ``tokenizer.json`` (see ``load_tokenizer_json`` for what raises)."""
        parts = load_tokenizer_json(path)
        return cls(parts["vocab"], parts["merges"], parts["pattern"], parts["added_tokens"],
                   nfc=parts["nfc"], ignore_merges=parts["ignore_merges"], template=parts["template"])

    def __repr__(self) -> str:
        return f"HFTokenizer(n_vocab={self.n_vocab}, merges={len(self._merge_result)}, added_tokens={len(self._added)})"

    # ----- vocabulary ---------------------------------------------------------------------------

    def token_to_id(self, token: str) -> int | None:
        """The id of a token (byte-level characters, or an added token's text), or None."""
        return self._token_to_id.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The token (byte-level characters or added token text) of an id, or None."""
        return self._id_to_token.get(token_id)

    def get_vocab_size(self) -> int:
        """Number of ids (vocabulary and added tokens), as ``tokenizers.Tokenizer.get_vocab_size()``."""
        return len(self._id_to_token)

    # ----- encoding -----------------------------------------------------------------------------

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """BPE of one pre-tokenized piece (step 3 of the module docstring)."""
        data = piece.encode("utf-8")
        if self.ignore_merges and data in self._bytes_to_id:
            return (self._bytes_to_id[data],)
        parts = [self._byte_ids[byte] for byte in data]
        if len(parts) > 1:
            rank, result = self._merge_rank.get, self._merge_result
            parts = merge_by_rank(parts, lambda left, right: rank((left, right)), lambda left, right, r: result[r])
        return tuple(parts)

    def _pieces(self, text: str) -> list[str]:
        """Pre-tokenization (``Split``, behavior ``Isolated``): the matches and the text between them."""
        pieces = self._pattern.findall(text)
        if sum(map(len, pieces)) == len(text):  # the usual case: the pattern matches every character
            return pieces
        pieces, end = [], 0
        for match in self._pattern.finditer(text):
            if match.start() > end:
                pieces.append(text[end:match.start()])
            if match.end() > match.start():
                pieces.append(match.group())
            end = match.end()
        if end < len(text):
            pieces.append(text[end:])
        return pieces

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` with no added-token matching (steps 1-3).

        Raises:
            TypeError: ``text`` is not a str.
        """
        check_text(text)
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        collector_was_enabled = gc.isenabled()
        gc.disable()  # many tuples, no cycles: see minigpt.tokenizer.Encoding.encode_ordinary
        try:
            return self._encode_pieces(self._pieces(text))
        except UnicodeEncodeError:
            # A lone surrogate has no UTF-8 (Python strings reach the tokenizers library as UTF-8,
            # which cannot hold one): each becomes U+FFFD, as minigpt.tokenizer does.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._encode_pieces(self._pieces(text))
        finally:
            if collector_was_enabled:
                gc.enable()

    def _encode_pieces(self, pieces: list[str]) -> list[int]:
        """The ids of the pieces, each merged once and kept in the cache (one C-level map)."""
        return list(chain.from_iterable(map(self._cache.__getitem__, pieces)))

    def encode(self, text: str, add_special_tokens: bool = True) -> HFEncoding:
        """Tokens of ``text``, every added token's text becoming its id (step 0), as
        ``tokenizers.Tokenizer.encode(text)``: the ids are ``.ids``. With ``add_special_tokens``
        the post-processor's template is applied (Llama 3's file puts ``<|begin_of_text|>``
        first; Qwen's adds nothing).

        Example (Qwen3's file): ``encode("<|im_start|>user").ids`` -> ``[151644, 872]``.

        Returns:
            an ``HFEncoding`` (``.ids``: list of int; ``.tokens``: the tokens' strings).

        Raises:
            TypeError: ``text`` is not a str.
        """
        ids = self.encode_ids(text)
        if add_special_tokens and (self._before or self._after):
            ids = self._before + ids + self._after
        return HFEncoding(ids, self)

    def encode_ids(self, text: str) -> list[int]:
        """The ids of ``encode(text, add_special_tokens=False)`` as a plain list."""
        check_text(text)
        if self._added_pattern is None:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for index, chunk in enumerate(self._added_pattern.split(text)):
            if index % 2:
                ids.append(self._added[chunk])
            elif chunk:
                ids += self.encode_ordinary(chunk)
        return ids

    # ----- decoding -----------------------------------------------------------------------------

    def decode(self, ids, skip_special_tokens: bool = False, errors: str = "replace") -> str:
        """Text of ids, as ``tokenizers.Tokenizer.decode``: byte-level tokens back to bytes, then
        UTF-8 with invalid sequences as U+FFFD; ``skip_special_tokens`` drops the added tokens
        marked special.

        Raises:
            TypeError: an id that is not an int.
            ValueError: an id outside ``[0, n_vocab)`` or that no token has (the ``tokenizers``
                library skips such ids silently; minigpt names them).
        """
        if skip_special_tokens:
            ids = [token_id for token_id in ids if token_id not in self._special_ids]
        tokens = self.decode_tokens_bytes(ids)
        if None in tokens:  # an id inside the range that no token has (the tokenizers library skips it)
            unused = next(token_id for token_id, token in zip(ids, tokens) if token is None)
            raise ValueError(f"token id {unused} is not a token of this tokenizer.json")
        return b"".join(tokens).decode("utf-8", errors=errors)

