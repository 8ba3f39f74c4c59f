"""BPE training (minigpt.bpe): a hand-worked example, agreement with a naive trainer, round trips,
the save/load format, special tokens and bad input."""

import warnings
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.bpe import GPT4_SPLIT_PATTERN, SPLIT_PATTERNS, BPETokenizer, merge_pair
from minigpt.tokenizer import GPT2_SPLIT_PATTERN

FIXTURES = Path(__file__).parent / "fixtures"
THE_VERDICT = (FIXTURES / "the-verdict.txt").read_text(encoding="utf-8")


def naive_train(text, num_merges, pattern=GPT2_SPLIT_PATTERN):
    """Reference trainer: recount every pair of every piece after every merge.

    Same rule as BPETokenizer: the most frequent pair, ties to the smallest (first, second).
    """
    words = [list(piece.encode("utf-8")) for piece in regex.findall(pattern, text)]
    merges = {}
    for new_id in range(256, 256 + num_merges):
        pair_counts = Counter(pair for ids in words for pair in zip(ids, ids[1:]))
        if not pair_counts:
            break
        best_pair = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges[best_pair] = new_id
        words = [merge_pair(ids, best_pair, new_id) for ids in words]
    return merges, words


def test_merge_pair():
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([5, 5, 5], (5, 5), 9) == [9, 5]  # left to right, no overlap
    assert merge_pair([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert merge_pair([], (1, 2), 9) == []
    assert merge_pair([1], (1, 2), 9) == [1]


def test_hand_worked_example():
    # The classic example (Wikipedia, "Byte pair encoding"): "aaabdaaabac", one piece.
    # Pair counts: aa 4, ab 2, bd 1, da 1, ba 1, ac 1.
    #   merge 1: (a, a) -> 256 ("aa");  left to right: aa a b d aa a b a c
    #   counts now: (256, a) 2, (a, b) 2, ...: a tie, broken by the smaller pair (97, 98) < (256, 97)
    #   merge 2: (a, b) -> 257 ("ab");  aa ab d aa ab a c
    #   merge 3: (256, 257) -> 258 ("aaab"); aaab d aaab a c
    a, b, c, d = map(ord, "abcd")
    tokenizer = BPETokenizer()
    tokenizer.train("aaabdaaabac", vocab_size=259)
    assert tokenizer.merges == {(a, a): 256, (a, b): 257, (256, 257): 258}
    assert tokenizer.vocab[256:] == [b"aa", b"ab", b"aaab"]
    assert tokenizer.encode("aaabdaaabac") == [258, d, 258, a, c]
    assert tokenizer.encode("aabab") == [256, b, 257]
    assert tokenizer.decode([258, d, 258, a, c]) == "aaabdaaabac"


def test_pieces_are_never_merged_across():
    # GPT-2's pattern cuts " cat" from "cat": no token may hold the space in the middle.
    tokenizer = BPETokenizer()
    tokenizer.train("ab ab ab ab", vocab_size=258)
    assert all(b" " not in token[1:] for token in tokenizer.vocab)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_incremental_training_equals_naive_training(pattern):
    text = THE_VERDICT[:6000]
    tokenizer = BPETokenizer(pattern=pattern)
    tokenizer.train(text, vocab_size=256 + 120)
    merges, words = naive_train(text, 120, SPLIT_PATTERNS[pattern])
    assert tokenizer.merges == merges
    # Encoding the training text cuts it exactly as training did.
    assert tokenizer.encode(text) == [token_id for ids in words for token_id in ids]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c\n", max_size=60), st.integers(0, 30))
def test_incremental_training_equals_naive_training_on_small_texts(text, num_merges):
    tokenizer = BPETokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # running out of pairs is expected here
        tokenizer.train(text, vocab_size=256 + num_merges)
    merges, words = naive_train(text, num_merges)
    assert tokenizer.merges == merges
    assert tokenizer.encode(text) == [token_id for ids in words for token_id in ids]


def test_training_is_deterministic_and_independent_of_word_order():
    words = THE_VERDICT[:4000].split(" ")
    first = BPETokenizer()
    first.train(" ".join(words), vocab_size=400)
    second = BPETokenizer()
    second.train(" ".join(words), vocab_size=400)
    assert first.merges == second.merges
    # Pair counts do not depend on the order of whole pieces (words here keep their leading space
    # except the first, so compare on texts whose pieces are the same multiset).
    shuffled = " " + " ".join(sorted(words))
    ordered = " " + " ".join(words)
    third, fourth = BPETokenizer(), BPETokenizer()
    third.train(shuffled, vocab_size=400)
    fourth.train(ordered, vocab_size=400)
    assert third.merges == fourth.merges


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_trained_tokenizer_round_trips(pattern):
    tokenizer = BPETokenizer(pattern=pattern)
    tokenizer.train(THE_VERDICT, vocab_size=600)
    assert tokenizer.n_vocab == 600
    ids = tokenizer.encode(THE_VERDICT)
    assert tokenizer.decode(ids) == THE_VERDICT
    assert len(ids) < len(THE_VERDICT.encode("utf-8")) / 2  # it does compress


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_trained_tokenizer_round_trips_any_text(text):
    ids = TRAINED.encode_ordinary(text)
    assert TRAINED.decode(ids) == text
    assert all(0 <= token_id < TRAINED.n_vocab for token_id in ids)


TRAINED = BPETokenizer(pattern="gpt4", special_tokens=["<|endoftext|>", "<|pad|>"])
TRAINED.train(THE_VERDICT, vocab_size=500)


def test_special_tokens_take_the_last_ids():
    assert TRAINED.n_vocab == 500
    assert TRAINED.special_tokens == {"<|endoftext|>": 498, "<|pad|>": 499}
    assert TRAINED.special_tokens_set == {"<|endoftext|>", "<|pad|>"}
    text = "the end<|endoftext|><|pad|>"
    ids = TRAINED.encode(text, allowed_special="all")
    assert ids[-2:] == [498, 499]
    assert TRAINED.decode(ids) == text
    with pytest.raises(ValueError, match="disallowed special token"):
        TRAINED.encode(text)
    ordinary = TRAINED.encode(text, disallowed_special=())
    assert 498 not in ordinary and TRAINED.decode(ordinary) == text


def test_save_and_load(tmp_path):
    path = tmp_path / "verdict.bpe"
    TRAINED.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "minigpt-bpe 1"
    assert lines[2] == "special_tokens 2"
    loaded = BPETokenizer.load(path)
    assert loaded.pattern == GPT4_SPLIT_PATTERN
    assert loaded.merges == TRAINED.merges
    assert loaded.special_tokens == TRAINED.special_tokens
    assert loaded.vocab == TRAINED.vocab
    assert loaded.encode(THE_VERDICT) == TRAINED.encode(THE_VERDICT)


def test_save_and_load_custom_pattern(tmp_path):
    tokenizer = BPETokenizer(pattern=r"\S+|\s+")
    tokenizer.train("to be or not to be", vocab_size=260)
    tokenizer.save(tmp_path / "custom.bpe")
    loaded = BPETokenizer.load(tmp_path / "custom.bpe")
    assert loaded.pattern == r"\S+|\s+"
    assert loaded.merges == tokenizer.merges


@pytest.mark.parametrize(
    "content, message",
    [
        ("minigpt-bpe 2\n", "version"),
        ("something else\n", "line 1"),
        ('minigpt-bpe 1\npattern "x"\nspecial_tokens 0\nmerges 3\n97 97\n', "ends early"),
        ('minigpt-bpe 1\npattern "x"\nspecial_tokens 0\nmerges 1\n97 300\n', "out of order"),
        ('minigpt-bpe 1\npattern "x"\nspecial_tokens 1\n"<|e|>" 7\nmerges 0\n', "special token ids"),
    ],
)
def test_load_rejects_bad_files(tmp_path, content, message):
    (tmp_path / "bad.bpe").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        BPETokenizer.load(tmp_path / "bad.bpe")


def test_verbose_training_shows_a_progress_bar(capsys):
    tokenizer = BPETokenizer()
    tokenizer.train(THE_VERDICT[:2000], vocab_size=280, verbose=True)
    assert "BPE merges" in capsys.readouterr().err


def test_running_out_of_pairs_warns():
    tokenizer = BPETokenizer(special_tokens=["<|endoftext|>"])
    with pytest.warns(UserWarning, match="no pairs left after 2 merges"):
        tokenizer.train("abc", vocab_size=300)
    assert tokenizer.n_vocab == 256 + 2 + 1
    assert tokenizer.special_tokens == {"<|endoftext|>": 258}


def test_bad_arguments():
    tokenizer = BPETokenizer(special_tokens=["<|endoftext|>"])
    with pytest.raises(ValueError, match="vocab_size"):
        tokenizer.train("abc", vocab_size=256)
    with pytest.raises(TypeError, match="str"):
        tokenizer.train(b"abc", vocab_size=300)
    with pytest.raises(TypeError, match="str"):
        tokenizer.encode(None)
    with pytest.raises(ValueError, match="token id 257 "):
        tokenizer.decode([97, 257])
    with pytest.raises(ValueError, match="regular expression"):
        BPETokenizer(pattern="(unclosed")
    with pytest.raises(ValueError, match="repeat"):
        BPETokenizer(special_tokens=["<|a|>", "<|a|>"])
