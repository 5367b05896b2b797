"""A reward-hacked selected set ('#' spam, one word repeated) trips the monitor; the filters remove it."""

import json
import logging

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from raft.evaluation.monitor import HackingMonitor, RewardHackingDetected
from raft.sampling.samples import Sample
from raft.selection.filters import CharacterFilter, Deduplicate, LengthFilter, RegexFilter, apply_filters

CLEAN = ["the cat sat on the mat", "a dog ran to the park", "why is the sky blue today", "birds sing in the morning"]
SPAM = "great great great great great great"
HACKED = [SPAM, SPAM, SPAM, "#love #happy #great", "#great #great", CLEAN[0]]


def as_samples(texts):
    return [Sample(prompt_idx=i, prompt=f"p{i}", response=t, reward=1.0) for i, t in enumerate(texts)]


def test_clean_baseline_then_hacked_set_warns(caplog):
    monitor = HackingMonitor(max_drop=0.3)
    first = monitor.update(0, CLEAN)
    # 19 bigrams inside the four texts, all different.
    assert first["selected_distinct_2"] == pytest.approx(1.0)
    assert first["selected_duplicate_share"] == 0.0
    assert set(first) == {"selected_distinct_2", "selected_msttr_100", "selected_length", "selected_duplicate_share"}
    with caplog.at_level(logging.WARNING, logger="raft"):
        hacked = monitor.update(1, HACKED)
    # Bigrams: 3 x 5 (great great) + 5 ('#' love '#' happy '#' great) + 3 (# great # great) + 5 = 28;
    # distinct: 1 + 5 + 1 new (great #) + 5 = 12.
    assert hacked["selected_distinct_2"] == pytest.approx(12 / 28)
    assert hacked["selected_duplicate_share"] == pytest.approx(2 / 6)
    [record] = [r for r in caplog.records if r.name == "raft"]
    assert "distinct_2" in record.message and "from 1 " in record.message and "0.4286" in record.message
    assert "msttr_100" not in record.message  # under 100 tokens: NaN, not compared
    assert monitor.alarms == [record.message]


def test_stop_mode_raises():
    monitor = HackingMonitor(action="stop")
    monitor.update(0, CLEAN)
    with pytest.raises(RewardHackingDetected, match="distinct_2"):
        monitor.update(1, HACKED)


def test_duplicates_alone_trip_it():
    monitor = HackingMonitor(action="stop", metrics=(), max_duplicate_share=0.5)
    monitor.update(0, CLEAN)
    monitor.update(1, ["same answer"] * 2 + ["other", "more"])  # 1 of 4 repeats: fine
    with pytest.raises(RewardHackingDetected, match="60% of selected responses are exact duplicates"):
        monitor.update(2, ["same answer"] * 4 + ["other"])


def test_a_small_drop_is_quiet(caplog):
    monitor = HackingMonitor(max_drop=0.3)
    monitor.update(0, CLEAN)
    with caplog.at_level(logging.WARNING, logger="raft"):
        monitor.update(1, CLEAN[:3] + ["the cat sat on the mat"])  # distinct-2 15/20: a 25% drop
    assert not caplog.records and not monitor.alarms


def test_baseline_survives_a_resume(tmp_path):
    # From metrics.csv rows (strings, any order) ...
    monitor = HackingMonitor(action="stop")
    monitor.baseline_from(
        [
            {"iteration": "2", "selected_distinct_2": "0.1"},
            {"iteration": "0", "selected_distinct_2": "1.0", "selected_msttr_100": ""},
        ]
    )
    assert monitor.baseline["distinct_2"] == 1.0
    with pytest.raises(RewardHackingDetected):
        monitor.update(3, HACKED)
    # ... or from the iteration-0 metrics.json the loop wrote.
    (tmp_path / "metrics.json").write_text(json.dumps({"iteration": 0, "selected_distinct_2": 1.0}))
    with pytest.raises(RewardHackingDetected):
        HackingMonitor(action="stop").update(3, HACKED, baseline_dir=tmp_path)


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="monitor.action"):
        HackingMonitor(action="ignore")
    with pytest.raises(ValueError, match="monitor.metrics"):
        HackingMonitor(metrics=("bleu",))


def test_paper_filters_remove_exactly_the_hacked_samples():
    filters = instantiate(OmegaConf.load("raft/conf/filters/hashtag_emoji.yaml")) + [Deduplicate()]
    samples = as_samples(HACKED + ["so happy \U0001f600", "fine ✨ thanks"])
    kept, removed = apply_filters(filters, samples)
    assert removed == {"hashtag": 2, "emoji": 2, "duplicates": 2}
    assert [s.response for s in kept] == [SPAM, CLEAN[0]]
    assert [s.prompt_idx for s in kept] == [0, 5]  # the first copy of the spam survives dedup


def test_strip_cleans_and_drops_what_is_left_empty():
    samples = as_samples(["I am #blessed today", "#love #happy", "no tags"])
    kept, removed = apply_filters([RegexFilter(r"#\w*", action="strip")], samples)
    assert [s.response for s in kept] == ["I am today", "no tags"]
    assert removed == {"regex_strip": 1}
    assert samples[0].response == "I am #blessed today"  # the input is not modified


def test_length_character_share_and_per_prompt_dedup():
    samples = as_samples(["one", "one two", "one two three four five six", "a#"])
    # Word tokens: 1, 2, 6, 2 ('a', '#').
    assert [s.response for s in LengthFilter(2, 5)(samples)] == ["one two", "a#"]
    assert [s.response for s in CharacterFilter("#", max_count=None, max_share=0.4)(samples)] == [
        "one",
        "one two",
        "one two three four five six",
    ]
    twice = [Sample(0, "p", "yes"), Sample(1, "q", "yes"), Sample(0, "p", " yes ", sample_idx=1)]
    assert len(Deduplicate(per_prompt=True)(twice)) == 2
    assert len(Deduplicate()(twice)) == 1


def test_same_kind_filters_keep_separate_counts():
    samples = as_samples(["a#", "b!", "c"])
    kept, removed = apply_filters([CharacterFilter("#"), CharacterFilter("#!", name="chars_#")], samples)
    assert removed == {"chars_#": 1, "chars_#_1": 1}
    assert [s.response for s in kept] == ["c"]


def test_filter_configs_compose():
    assert instantiate(OmegaConf.load("raft/conf/filters/none.yaml")) == []
    clean = instantiate(OmegaConf.load("raft/conf/filters/clean.yaml"))
    assert [type(f).__name__ for f in clean] == ["Deduplicate", "LengthFilter"]


def test_a_stripped_sample_trains_on_the_cleaned_text():
    """Fine-tuning reads a sample's ids, not its text: a strip that cleaned only the text changed nothing that
    trains. The cleaned sample is tokenised as the model would produce it, with EOS only where it stopped."""
    from raft.policies.causal_lm import CausalLMPolicy
    from raft.policies.models import load_causal_lm

    policy = CausalLMPolicy("tiny-llama", chat_template=False)
    _, tokenizer = load_causal_lm("tiny-llama")
    eos = tokenizer.eos_token_id

    def sampled(i, response, finish_reason):  # ids as sampling records them: EOS included where it stopped
        prompt_ids, response_ids = policy.encode_pair(tokenizer, f"p{i}", response)
        ids = response_ids + [eos] * (finish_reason == "stop")
        return Sample(i, f"p{i}", response, prompt_ids=prompt_ids, response_ids=ids, finish_reason=finish_reason)

    samples = [
        sampled(0, " I am #blessed today", "stop"),
        sampled(1, " so #happy and", "length"),  # cut at max_new_tokens: no EOS before or after cleaning
        sampled(2, " no tags here", "stop"),
    ]
    kept, _ = apply_filters([RegexFilter(r"#\w*", action="strip")], samples)
    rows = policy.token_rows(tokenizer, kept)
    # the leading space stays: raw-text prompts end before it, as the model's own responses start with it
    for (prompt_ids, response_ids), (i, text, stopped) in zip(rows, [(0, " I am today", 1), (1, " so and", 0)]):
        want = policy.encode_pair(tokenizer, f"p{i}", text)
        assert (prompt_ids, response_ids) == (want[0], want[1] + [eos] * stopped)
    assert rows[2] == (samples[2].prompt_ids, samples[2].response_ids)  # nothing stripped: the sampled ids
    assert [s.response for s in kept] == [" I am today", " so and", " no tags here"]
    assert kept[1].truncated and not kept[0].truncated
