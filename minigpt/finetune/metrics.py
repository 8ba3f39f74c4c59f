"""An offline metric for chapter 7's test set: ROUGE-L F1 and exact match against the references.

The book (section 7.8) scores the fine-tuned model's answers with a larger LLM as a judge
(`minigpt.finetune.judge`). That needs a running server; this metric needs nothing: it compares
each `model_response` with the entry's reference `output` word by word.

ROUGE-L (Lin 2004, section 3.1) measures the longest common subsequence (LCS) of the two word
sequences: with r reference words, c candidate words and an LCS of length l,

    precision = l / c,   recall = l / r,   F1 = 2 * precision * recall / (precision + recall)

(Lin's F with beta = 1, as Google's `rouge-score` package reports it). Words are found as
`rouge-score` finds them without stemming: the text is lower-cased and every run of characters
other than a-z and 0-9 separates words (so punctuation and accents do not count). The values
equal `rouge_score.rouge_scorer.RougeScorer(["rougeL"]).score(reference, candidate)`, which the
tests check on reference values made with rouge-score 0.1.2.

Exact match: the two word sequences (as above) are identical, so "Jane Austen." matches
"jane austen" but not "The author is Jane Austen."

References: Chin-Yew Lin, "ROUGE: A Package for Automatic Evaluation of Summaries", ACL workshop
2004, section 3.1 (ROUGE-L, and the "police killed the gunman" example); google-research's
rouge-score (tokenize.py, rouge_scorer.py); Raschka, "Build a Large Language Model (From
Scratch)", section 7.8.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

__all__ = ["Score", "rouge_tokenize", "lcs_length", "rouge_l", "exact_match", "score_responses"]

_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


class Score(NamedTuple):
    """Precision, recall and F1 of one candidate against one reference, each in [0, 1]."""

    precision: float
    recall: float
    fmeasure: float


def rouge_tokenize(text: str) -> list[str]:
    """The words of `text` as ROUGE counts them: lower case, runs of [a-z0-9] only.

    Example:
        >>> rouge_tokenize("The car is as fast as lightning.")
        ['the', 'car', 'is', 'as', 'fast', 'as', 'lightning']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, received {type(text).__name__}")
    return [word for word in _NOT_ALPHANUMERIC.split(text.lower()) if word]


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of `a` and `b` (dynamic programming, O(len(a) * len(b))).

    Example:
        >>> lcs_length("police killed the gunman".split(), "the gunman kill police".split())
        2
    """
    previous = [0] * (len(b) + 1)  # previous[j]: LCS of a[:i-1] and b[:j]
    for item in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if item == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: str, candidate: str) -> Score:
    """ROUGE-L of a candidate text against a reference text (Lin 2004, eq. 2-4 with beta = 1).

    Returns:
        Score(precision, recall, fmeasure); all 0 when either text has no words.

    Example (Lin 2004, section 3.1):
        >>> rouge_l("police killed the gunman", "police kill the gunman").fmeasure
        0.75
    """
    reference_words, candidate_words = rouge_tokenize(reference), rouge_tokenize(candidate)
    if not reference_words or not candidate_words:
        return Score(0.0, 0.0, 0.0)
    common = lcs_length(reference_words, candidate_words)
    precision, recall = common / len(candidate_words), common / len(reference_words)
    fmeasure = 2 * precision * recall / (precision + recall) if common else 0.0
    return Score(precision, recall, fmeasure)


def exact_match(reference: str, candidate: str) -> bool:
    """True when both texts have the same words (case, punctuation and spacing aside)."""
    return rouge_tokenize(reference) == rouge_tokenize(candidate)


def score_responses(json_data: Sequence[Mapping], json_key: str = "model_response", reference_key: str = "output") -> dict:
    """Mean ROUGE-L F1 and exact-match rate of the responses under `json_key` against `reference_key`.

    Args:
        json_data: entries as written by `save_responses` (the book's instruction-data-with-response.json).
        json_key: the field holding the model's answer.
        reference_key: the field holding the reference answer.

    Returns:
        {"count": N, "rouge_l_f1": mean F1, "exact_match": fraction of exact matches,
         "rouge_l": [Score per entry], "exact": [bool per entry]}.

    Raises:
        ValueError: no entries, or an entry without a str under either key (named with its index).
    """
    if len(json_data) == 0:
        raise ValueError("json_data: expected at least one entry, received none")
    scores, exact = [], []
    for index, entry in enumerate(json_data):
        for key in (json_key, reference_key):
            if not isinstance(entry.get(key), str):
                raise ValueError(f"json_data: entry {index} has no str field {key!r} (its keys: {sorted(entry)})")
        scores.append(rouge_l(entry[reference_key], entry[json_key]))
        exact.append(exact_match(entry[reference_key], entry[json_key]))
    return {
        "count": len(scores),
        "rouge_l_f1": sum(score.fmeasure for score in scores) / len(scores),
        "exact_match": sum(exact) / len(exact),
        "rouge_l": scores,
        "exact": exact,
    }
