"""Long pre-tokenizer pieces (issue 10): a run of 20,000 letters, digits, newlines, emoji or
ideographic spaces is one piece, merged by `minigpt.tokenizer.merge_by_rank` in O(n log n).

The ids must stay exactly those of the simple merge (rescan the list for the lowest-ranked pair,
O(n^2)), kept below as the reference, and those of tiktoken (golden fixtures). How fast is a
benchmark's question (`python scripts/bench.py tokenizer --length-curve`), not a test's.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.bpe import BPETokenizer
from minigpt.tokenizer import HEAP_MERGE_MIN_BYTES, get_encoding, merge_by_rank

GOLDEN = Path(__file__).parent / "fixtures" / "tokenizer"
LONG_RUNS = json.loads((GOLDEN / "gpt2_long_runs.json").read_text(encoding="utf-8"))["cases"]
KINDS = {  # (prefix, unit): runs of every kind that GPT-2's pattern keeps in one piece
    "letter": ("", "a"), "digit": ("", "7"), "punctuation": ("", "!"), "newline": ("", "\n"),
    "emoji": ("", "\U0001F600"), "ideographic space": ("", "\u3000"), "letters after a space": (" ", "q"),
    "mixed letters": ("", "abcab"), "mixed punctuation": ("", "-=."), "tabs": ("", "\t"),
}


def simple_merge(parts, pair_rank, join):
    """The reference: repeatedly merge the lowest-ranked adjacent pair, leftmost among equals.

    This is the merge loop minigpt used before issue 10 (and tiktoken's rule), written plainly:
    rescan every pair after every merge, O(n^2) per piece.
    """
    parts = list(parts)
    while len(parts) > 1:
        ranks = [pair_rank(left, right) for left, right in zip(parts, parts[1:])]
        candidates = [(rank, index) for index, rank in enumerate(ranks) if rank is not None]
        if not candidates:
            break
        rank, index = min(candidates)
        parts[index : index + 2] = [join(parts[index], parts[index + 1], rank)]
    return parts


@pytest.fixture(scope="module")
def enc():
    return get_encoding("gpt2")


def gpt2_simple_ids(enc, text):
    """GPT-2 ids of `text` with the simple merge for every piece."""
    get = enc._mergeable_ranks.get
    ids = []
    for piece in enc._pattern.findall(text):
        parts = simple_merge([bytes([byte]) for byte in piece.encode("utf-8")],
                             lambda left, right: get(left + right), lambda left, right, rank: left + right)
        ids += [enc._mergeable_ranks[part] for part in parts]
    return ids


@pytest.mark.parametrize("case", LONG_RUNS, ids=[f"{case['kind']}-{case['repeats']}" for case in LONG_RUNS])
def test_long_runs_match_tiktoken(enc, case):
    text = case["prefix"] + case["unit"] * case["repeats"] + case["suffix"]
    expected = np.load(GOLDEN / "gpt2_long_runs.npz")[case["name"]].tolist()
    assert enc.encode_ordinary(text) == expected
    assert enc.decode(expected) == text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("repeats", [HEAP_MERGE_MIN_BYTES - 1, HEAP_MERGE_MIN_BYTES, 150, 401])
def test_long_runs_match_the_simple_merge(enc, kind, repeats):
    prefix, unit = KINDS[kind]
    text = prefix + unit * repeats
    assert len(enc._pattern.findall(text)) <= 2  # one piece (whitespace may keep its last space apart)
    assert enc.encode_ordinary(text) == gpt2_simple_ids(enc, text)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120).map(lambda data: bytes(b"ab \n1"[byte % 5] for byte in data)))
def test_fast_merge_equals_simple_merge_on_gpt2_ranks(data):
    """Random strings over a five-byte alphabet: many merges compete, ties included."""
    get = get_encoding("gpt2")._mergeable_ranks.get

    def pair_rank(left, right):
        return get(left + right)

    def join(left, right, rank):
        return left + right

    parts = [bytes([byte]) for byte in data]
    assert merge_by_rank(list(parts), pair_rank, join) == simple_merge(parts, pair_rank, join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2), max_size=80), st.dictionaries(
    st.tuples(st.integers(0, 5), st.integers(0, 5)), st.integers(0, 6), max_size=20))
def test_fast_merge_equals_simple_merge_on_random_ranks(ids, table):
    """Arbitrary rank tables (ranks may repeat: equal ranks must go to the leftmost pair)."""
    def pair_rank(left, right):
        return table.get((left, right))

    def join(left, right, rank):
        return min(5, left + right + rank % 2)  # merged parts reuse small ids, so merges chain

    assert merge_by_rank(list(ids), pair_rank, join) == simple_merge(ids, pair_rank, join)


def test_merge_by_rank_edge_cases():
    def pair_rank(left, right):
        return {("a", "b"): 0, ("b", "c"): 1, ("ab", "c"): 2}.get((left, right))

    def join(left, right, rank):
        return left + right

    assert merge_by_rank([], pair_rank, join) == []
    assert merge_by_rank(["a"], pair_rank, join) == ["a"]
    assert merge_by_rank(list("abc"), pair_rank, join) == ["abc"]  # the docstring's worked example
    assert merge_by_rank(list("cab"), pair_rank, join) == ["c", "ab"]


def bpe_simple_ids(tokenizer, text):
    """A BPETokenizer's ids with the simple merge for every piece."""
    ids = []
    for piece in tokenizer._compiled_pattern.findall(text):
        ids += simple_merge(list(piece.encode("utf-8")), lambda left, right: tokenizer.merges.get((left, right)),
                            lambda left, right, rank: rank)
    return ids


@pytest.fixture(scope="module")
def run_tokenizer():
    """A BPE vocabulary trained on text with long runs (so it has merges for them)."""
    tokenizer = BPETokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it may run out of pairs before 400 tokens
        tokenizer.train("".join(prefix + unit * 300 + " " for prefix, unit in KINDS.values()) + "ab ba aab abab " * 20,
                        vocab_size=400)
    return tokenizer


@pytest.mark.parametrize("kind", KINDS)
def test_bpe_long_runs_match_the_simple_merge(run_tokenizer, kind):
    prefix, unit = KINDS[kind]
    text = prefix + unit * 333
    ids = run_tokenizer.encode(text)
    assert ids == bpe_simple_ids(run_tokenizer, text)
    assert run_tokenizer.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab \n1", min_size=HEAP_MERGE_MIN_BYTES, max_size=200))
def test_bpe_fast_merge_equals_simple_merge(run_tokenizer, text):
    merges = run_tokenizer.merges
    whole = simple_merge(list(text.encode("utf-8")), lambda left, right: merges.get((left, right)),
                         lambda left, right, rank: rank)
    assert run_tokenizer._encode_piece(text) == tuple(whole)  # the whole text as one piece
    assert run_tokenizer.encode(text) == bpe_simple_ids(run_tokenizer, text)


def test_bpe_training_on_long_words_equals_naive_training():
    """The trainer's linked list gives the merges of the naive trainer on long, repetitive words."""
    from tests.test_bpe import naive_train

    text = "a" * 3000 + " " + "abcab" * 400 + " 7777777777" * 3 + "\n" * 500
    tokenizer = BPETokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # these texts may run out of pairs
        tokenizer.train(text, vocab_size=256 + 60)
    merges, words = naive_train(text, 60)
    assert tokenizer.merges == merges
    assert tokenizer.encode(text) == [token_id for ids in words for token_id in ids]
