"""Diversity metrics as defined by GEM-metrics (used by RL4LMs and the RAFT paper's tables).

Tokenisation: NLTK's `word_tokenize` splits text into sentences with the Punkt model (data that
must be downloaded) and then runs `NLTKWordTokenizer` on each sentence. Punkt data is not available
offline, so sentences are split here with a regex (after . ! ? followed by white space) and each is
tokenised with `nltk.tokenize.NLTKWordTokenizer`, which needs no data. The only difference from
`word_tokenize` is an abbreviation followed by a space ("Mr. Smith"): Punkt keeps "Mr." whole, this
splits off the period. Tokens are lower-cased after tokenising (NLTK's rules are case-aware).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from typing import Sequence

from nltk.tokenize import NLTKWordTokenizer

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_WORD_TOKENIZER = NLTKWordTokenizer()


def is_punctuation(token: str) -> bool:
    """True for tokens made only of punctuation, including NLTK's `` and '' quote tokens."""
    return all(ch in string.punctuation or unicodedata.category(ch).startswith("P") for ch in token)


def word_tokenize(text: str, drop_punctuation: bool = False) -> list[str]:
    tokens = [tok.lower() for sentence in _SENTENCE_BREAK.split(text) for tok in _WORD_TOKENIZER.tokenize(sentence)]
    if drop_punctuation:
        tokens = [tok for tok in tokens if not is_punctuation(tok)]
    return tokens


def _tokenize_all(texts: Sequence[str], drop_punctuation: bool = False) -> list[list[str]]:
    return [word_tokenize(text, drop_punctuation) for text in texts]


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _pooled_ngrams(token_lists: list[list[str]], n: int) -> Counter:
    """n-grams taken inside each text (never across two texts), counted over the corpus."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counts: Counter = Counter()
    for tokens in token_lists:
        counts.update(_ngrams(tokens, n))
    return counts


def _msttr(token_lists: list[list[str]], window: int) -> float:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    stream = [tok for tokens in token_lists for tok in tokens]
    full_windows = len(stream) // window  # the last partial window is dropped
    if full_windows == 0:
        return math.nan  # no complete window: undefined (GEM would divide by zero)
    ratios = [len(set(stream[i * window : (i + 1) * window])) / window for i in range(full_windows)]
    return sum(ratios) / full_windows


def _distinct(token_lists: list[list[str]], n: int) -> float:
    counts = _pooled_ngrams(token_lists, n)
    total = sum(counts.values())
    return len(counts) / total if total else math.nan


def _unique(token_lists: list[list[str]], n: int) -> int:
    return sum(1 for c in _pooled_ngrams(token_lists, n).values() if c == 1)


def _mean_length(token_lists: list[list[str]]) -> float:
    return sum(len(tokens) for tokens in token_lists) / len(token_lists) if token_lists else math.nan


def msttr(texts: Sequence[str], window: int = 100, drop_punctuation: bool = False) -> float:
    """Mean segmental type-token ratio over non-overlapping windows of the concatenated token stream.

    NaN when the texts hold fewer than `window` tokens in all.
    """
    return _msttr(_tokenize_all(texts, drop_punctuation), window)


def distinct_n(texts: Sequence[str], n: int, drop_punctuation: bool = False) -> float:
    """Distinct n-grams / all n-grams, pooled over texts. NaN when there is no n-gram."""
    return _distinct(_tokenize_all(texts, drop_punctuation), n)


def unique_n(texts: Sequence[str], n: int, drop_punctuation: bool = False) -> int:
    """Number of n-grams occurring exactly once in the corpus: a count, comparable only at a fixed size."""
    return _unique(_tokenize_all(texts, drop_punctuation), n)


def mean_length(texts: Sequence[str], drop_punctuation: bool = False) -> float:
    """Mean number of word tokens per text. NaN for no texts."""
    return _mean_length(_tokenize_all(texts, drop_punctuation))


def duplicate_share(texts: Sequence[str]) -> float:
    """Share of texts that repeat an earlier text exactly (0.0 for no texts)."""
    if not texts:
        return 0.0
    return (len(texts) - len(set(texts))) / len(texts)


def diversity_report(texts: Sequence[str], drop_punctuation: bool = False) -> dict[str, float]:
    """All table metrics at once, tokenising once. Keys match the evaluation dict (eval_* columns)."""
    token_lists = _tokenize_all(texts, drop_punctuation)
    return {
        "msttr_100": _msttr(token_lists, 100),
        "distinct_1": _distinct(token_lists, 1),
        "distinct_2": _distinct(token_lists, 2),
        "unique_1": _unique(token_lists, 1),
        "unique_2": _unique(token_lists, 2),
        "length": _mean_length(token_lists),
        "n": len(texts),
    }
