"""Every diversity metric on texts small enough to work out by hand."""

import math

import pytest

from raft.evaluation.metrics.diversity import (
    distinct_n,
    diversity_report,
    duplicate_share,
    mean_length,
    msttr,
    unique_n,
    word_tokenize,
)


def test_word_tokenize_nltk_style_lower_case():
    assert word_tokenize("Hello, World! It's fine.") == ["hello", ",", "world", "!", "it", "'s", "fine", "."]
    assert word_tokenize("Hello, World! It's fine.", drop_punctuation=True) == ["hello", "world", "it", "'s", "fine"]
    # Sentence-final periods inside a text are split off, as word_tokenize does per sentence.
    assert word_tokenize("Go home. Now") == ["go", "home", ".", "now"]
    assert word_tokenize('He said "no" #win', drop_punctuation=True) == ["he", "said", "no", "win"]


def test_msttr_drops_last_partial_window():
    # Stream a a b b c, windows of 2: [a a] -> 1/2, [b b] -> 1/2, [c] dropped.
    assert msttr(["a a b", "b c"], window=2) == pytest.approx(0.5)
    # (Scoring the partial window [c] as 1 type / 1 token would give (0.5 + 0.5 + 1) / 3 = 2/3.)
    # 100 copies of "x" then 50 distinct words: window 1 has 1 type / 100 = 0.01; the partial window of
    # 50 distinct words is dropped (keeping it would give (0.01 + 50/50) / 2 = 0.505).
    text = " ".join(["x"] * 100 + [f"w{i}" for i in range(50)])
    assert msttr([text]) == pytest.approx(0.01)


def test_msttr_windows_run_across_texts():
    # Stream "a b" + "a b" = a b a b; windows of 3 -> [a b a] = 2/3; [b] dropped.
    assert msttr(["a b", "a b"], window=3) == pytest.approx(2 / 3)
    # 100 words in two texts form one full window: 50 types.
    assert msttr([" ".join(f"w{i % 50}" for i in range(60)), " ".join(f"w{i}" for i in range(40))]) == pytest.approx(
        0.5
    )


def test_msttr_without_a_full_window_is_nan():
    assert math.isnan(msttr(["only a few words here"]))
    assert math.isnan(msttr([]))


def test_distinct_n_grams_stay_inside_each_text():
    # Bigrams inside texts: (a b), (a b) -> 1 distinct / 2. Across the boundary (b a) would give 2/3.
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(0.5)
    # Unigrams a b a c: 3 distinct of 4.
    assert distinct_n(["a b", "a c"], 1) == pytest.approx(0.75)
    assert distinct_n(["the cat sat", "the cat ran"], 2) == pytest.approx(3 / 4)
    assert math.isnan(distinct_n(["one", "two"], 2))  # no bigram at all


def test_unique_n_is_a_count_of_singletons():
    # Unigrams the:2 cat:2 sat:1 ran:1 -> 2; bigrams (the cat):2 (cat sat):1 (cat ran):1 -> 2.
    assert unique_n(["the cat sat", "the cat ran"], 1) == 2
    assert unique_n(["the cat sat", "the cat ran"], 2) == 2
    # a:2 b:1 c:1 -> 2 unigrams; bigrams (a b), (b a) -> 2, no (a c) across texts.
    assert unique_n(["a b a", "c"], 1) == 2
    assert unique_n(["a b a", "c"], 2) == 2
    # A count, not a ratio: doubling distinct material doubles it.
    assert unique_n(["a b", "c d"], 1) == 2 * unique_n(["a b"], 1)


def test_mean_length_in_word_tokens():
    # "Hello, world." -> hello , world . (4 tokens); "Yes" -> 1.
    assert mean_length(["Hello, world.", "Yes"]) == pytest.approx(2.5)
    assert mean_length(["Hello, world.", "Yes"], drop_punctuation=True) == pytest.approx(1.5)
    assert math.isnan(mean_length([]))


def test_duplicate_share_counts_repeats_of_earlier_texts():
    assert duplicate_share(["a", "b", "a", "a"]) == pytest.approx(0.5)
    assert duplicate_share(["a", "b"]) == 0.0
    assert duplicate_share([]) == 0.0


def test_diversity_report_keys_and_values():
    report = diversity_report(["The cat sat", "the cat ran"])
    assert set(report) == {"msttr_100", "distinct_1", "distinct_2", "unique_1", "unique_2", "length", "n"}
    assert report["n"] == 2
    assert report["length"] == pytest.approx(3.0)
    assert report["distinct_1"] == pytest.approx(4 / 6)  # lower-casing merges The/the
    assert report["distinct_2"] == pytest.approx(3 / 4)
    assert report["unique_1"] == 2 and report["unique_2"] == 2
    assert math.isnan(report["msttr_100"])
