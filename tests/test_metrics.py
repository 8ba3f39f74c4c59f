"""minigpt.finetune.metrics: ROUGE-L against rouge-score's values and Lin (2004)'s example; exact match."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigpt.finetune.metrics import exact_match, lcs_length, rouge_l, rouge_tokenize, score_responses

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "instruction"


def test_published_example_lin_2004():
    # Lin 2004, section 3.1: reference S1 "police killed the gunman"; S2 has ROUGE-L 3/4, S3 1/2.
    assert rouge_l("police killed the gunman", "police kill the gunman") == (0.75, 0.75, 0.75)
    assert rouge_l("police killed the gunman", "the gunman kill police") == (0.5, 0.5, 0.5)


def test_matches_rouge_score_golden_values():
    golden = json.loads((FIXTURES / "rouge_l_golden.json").read_text())
    assert len(golden) == 120
    for case in golden:
        score = rouge_l(case["reference"], case["candidate"])
        assert score.precision == pytest.approx(case["precision"], abs=1e-12), case
        assert score.recall == pytest.approx(case["recall"], abs=1e-12), case
        assert score.fmeasure == pytest.approx(case["fmeasure"], abs=1e-12), case


words = st.lists(st.sampled_from("a b c d".split()), max_size=8)


def brute_force_lcs(a, b):
    """Longest common subsequence by trying every subsequence of a (small inputs only)."""
    best = 0
    for mask in range(1 << len(a)):
        sub = [a[i] for i in range(len(a)) if mask >> i & 1]
        it = iter(b)
        if all(any(x == y for y in it) for x in sub):
            best = max(best, len(sub))
    return best


@given(words, words)
def test_lcs_against_brute_force(a, b):
    assert lcs_length(a, b) == brute_force_lcs(a, b) == lcs_length(b, a)


def test_tokenize_and_exact_match():
    assert rouge_tokenize("Jane Austen.") == ["jane", "austen"]
    assert exact_match("Jane Austen.", "jane  austen")
    assert not exact_match("Jane Austen.", "The author of 'Pride and Prejudice' is Jane Austen.")
    with pytest.raises(TypeError, match="text: expected a str"):
        rouge_tokenize(None)


def test_score_responses_on_the_books_answers():
    entries = json.loads((FIXTURES / "instruction-data-with-response.json").read_text())
    result = score_responses(entries)
    assert result["count"] == 110
    golden = json.loads((FIXTURES / "rouge_l_golden.json").read_text())[:110]
    assert result["rouge_l_f1"] == pytest.approx(sum(case["fmeasure"] for case in golden) / 110, abs=1e-12)
    assert result["exact_match"] == pytest.approx(17 / 110)
    with pytest.raises(ValueError, match="entry 0 has no str field 'model_response'"):
        score_responses([{"output": "x"}])
    with pytest.raises(ValueError, match="expected at least one entry"):
        score_responses([])
