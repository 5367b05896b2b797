"""Preference-pair parsing, the real HH-RLHF file, error messages, and the split."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from raft.cli.resolvers import asset_path
from raft.data import EverydayPrompts, Pair, PreferencePairs, split_dialogue
from raft.data.preference_pairs import parse_row, split_indices
from raft.data.sources import EVERYDAY_PROMPTS

HH = asset_path("hh_rlhf/harmless-base.jsonl.gz")  # the 2,015 harmless-base pairs shipped with raft


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_single_turn_split():
    prompt, response = split_dialogue("\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?")
    assert prompt == "\n\nHuman: Hi there\n\nAssistant:"
    assert response == " Hello! How can I help?"  # the space the model produces stays


def test_multi_turn_prompt_keeps_earlier_turns():
    dialogue = "\n\nHuman: Name a fruit.\n\nAssistant: Apple.\n\nHuman: Another?\n\nAssistant: Pear, maybe."
    prompt, response = split_dialogue(dialogue)
    assert prompt == "\n\nHuman: Name a fruit.\n\nAssistant: Apple.\n\nHuman: Another?\n\nAssistant:"
    assert response == " Pear, maybe."


def test_rejected_response_split_against_chosen_prompt():
    row = {
        "chosen": "\n\nHuman: A?\n\nAssistant: x\n\nHuman: B?\n\nAssistant: good answer",
        "rejected": "\n\nHuman: A?\n\nAssistant: x\n\nHuman: B?\n\nAssistant: bad answer",
    }
    assert parse_row(row, 0) == Pair(
        "\n\nHuman: A?\n\nAssistant: x\n\nHuman: B?\n\nAssistant:", " good answer", " bad answer"
    )


def test_response_containing_an_assistant_turn_uses_the_shared_prompt():
    # The chosen response itself contains "\n\nAssistant:", as in three rows of harmless-base.
    row = {
        "chosen": "\n\nHuman: Q?\n\nAssistant: part one\n\nAssistant: part two",
        "rejected": "\n\nHuman: Q?\n\nAssistant: other",
    }
    assert parse_row(row, 0) == Pair("\n\nHuman: Q?\n\nAssistant:", " part one\n\nAssistant: part two", " other")


def test_separate_prompt_column_layout():
    row = {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " Hello.", "rejected": " Go away."}
    assert parse_row(row, 0) == Pair("\n\nHuman: Hi\n\nAssistant:", " Hello.", " Go away.")


def test_real_hh_rlhf_file_loads_all_rows():
    data = PreferencePairs(str(HH), test_fraction=0.2, seed=0)
    train, test = data.pairs("train"), data.pairs("test")
    assert data.report.rows == 2015
    assert len(train) + len(test) + data.report.identical_dropped == 2015
    assert len(test) == round(2015 * 0.2)
    for pair in train[:50] + test[:50]:
        assert pair.prompt.startswith("\n\nHuman:") and pair.prompt.endswith("\n\nAssistant:")
        assert pair.chosen != pair.rejected and pair.chosen.startswith(" ")  # as the dialogue has it
    assert data.prompts("test") == [p.prompt for p in test]
    assert data.references("test") == [p.chosen for p in test]
    assert data.chat is False


def test_identical_pairs_are_dropped_and_counted(tmp_path):
    same = "\n\nHuman: Hi\n\nAssistant: Hello."
    rows = [{"chosen": same, "rejected": same}, {"chosen": same, "rejected": "\n\nHuman: Hi\n\nAssistant: No."}]
    data = PreferencePairs(str(write_jsonl(tmp_path / "p.jsonl", rows)), test_fraction=0.0)
    assert len(data.pairs("train")) == 1
    assert data.report.identical_dropped == 1


def test_gzip_file_is_read(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(
            json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}) + "\n"
        )
    pairs = PreferencePairs(str(path), test_fraction=0.0).pairs("train")
    assert pairs == [Pair("\n\nHuman: a\n\nAssistant:", " b", " c")]


def test_missing_path_error():
    with pytest.raises(ValueError, match=re.escape("data.path='x' does not exist")):
        PreferencePairs("x")


def test_row_without_rejected_names_the_row(tmp_path):
    good = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}
    rows = [good] * 17 + [{"chosen": good["chosen"]}]
    with pytest.raises(
        ValueError, match=re.escape("data.path: row 17 has no 'rejected' field")
    ):  # a local file is read, and checked, when the source is built
        PreferencePairs(str(write_jsonl(tmp_path / "p.jsonl", rows)))


def test_chosen_without_assistant_turn(tmp_path):
    rows = [{"chosen": "\n\nHuman: only a question", "rejected": "\n\nHuman: a\n\nAssistant: c"}]
    with pytest.raises(
        ValueError, match=re.escape("data.path: row 0 'chosen' has no '\\n\\nAssistant:' turn")
    ):  # a local file is read, and checked, when the source is built
        PreferencePairs(str(write_jsonl(tmp_path / "p.jsonl", rows)))


def test_bad_fraction_fails_at_construction():
    with pytest.raises(ValueError, match="data.test_fraction"):
        PreferencePairs(str(HH), test_fraction=1.5)


def test_split_is_deterministic_disjoint_and_seeded():
    a = PreferencePairs(str(HH), test_fraction=0.25, seed=3)
    b = PreferencePairs(str(HH), test_fraction=0.25, seed=3)
    c = PreferencePairs(str(HH), test_fraction=0.25, seed=4)
    assert a.pairs("test") == b.pairs("test") and a.pairs("train") == b.pairs("train")
    assert a.pairs("test") != c.pairs("test")
    train_idx, test_idx = split_indices(2015, 0.25, seed=3)
    assert not set(train_idx) & set(test_idx) and sorted(train_idx + test_idx) == list(range(2015))
    assert split_indices(2015, 0.25, seed=3) == (train_idx, test_idx)


def test_caps_and_prompt_length_filter():
    data = PreferencePairs(str(HH), test_fraction=0.2, seed=0, max_train=100, max_test=10, max_prompt_chars=300)
    assert len(data.pairs("train")) == 100 and len(data.pairs("test")) == 10
    assert all(len(p) <= 300 for p in data.prompts("train") + data.prompts("test"))
    full = PreferencePairs(str(HH), test_fraction=0.2, seed=0)
    # Filters never move a pair across the split.
    assert set(data.prompts("test")) <= set(full.prompts("test"))


def test_everyday_prompts_file_and_split():
    lines = [line for line in EVERYDAY_PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert 250 <= len(lines) == len(set(lines))
    assert max(len(line) for line in lines) < 120
    data = EverydayPrompts(n_test=40, seed=1, limit=100)
    train, test = data.prompts("train"), data.prompts("test")
    assert len(test) == 40 and len(train) == 100 and not set(train) & set(test)
    assert EverydayPrompts(n_test=40, seed=1).prompts("test") == test
    assert data.chat is True and data.references("test") is None
    with pytest.raises(ValueError, match="prompts only"):
        data.pairs("train")


def test_a_separate_test_file_replaces_the_held_out_share(tmp_path):
    def rows(tag, n):
        return [
            {
                "prompt": f"\n\nHuman: {tag} question {i}\n\nAssistant:",
                "chosen": f"{tag} yes {i}",
                "rejected": f"{tag} no {i}",
            }
            for i in range(n)
        ]

    train = write_jsonl(tmp_path / "train.jsonl", rows("train", 10))
    test = write_jsonl(tmp_path / "test.jsonl", rows("test", 4))
    data = PreferencePairs(str(train), test_path=str(test), max_test=3)
    assert len(data.pairs("train")) == 10 and all("train" in p.chosen for p in data.pairs("train"))
    assert [p.chosen for p in data.pairs("test")] == ["test yes 0", "test yes 1", "test yes 2"]
    with pytest.raises(ValueError, match="data.test_path="):
        PreferencePairs(str(train), test_path=str(tmp_path / "missing.jsonl"))
