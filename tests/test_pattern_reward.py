import pytest

from raft.rewards.pattern import PatternCount


def test_counts_matches_with_weight_and_cap():
    reward = PatternCount("#", weight=0.5, max_count=2)
    assert reward(["p", "p", "p"], ["no hash", "# one", "### three"]) == [0.0, 0.5, 1.0]


def test_bad_pattern_names_the_field():
    with pytest.raises(ValueError, match="reward.pattern='\\(' is not a regular expression"):
        PatternCount("(")
