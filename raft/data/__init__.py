"""Prompt and preference-pair data for the loop, SFT and reward modelling."""

from raft.data.preference_pairs import Pair, load_pairs, split_dialogue, split_pairs
from raft.data.sources import EverydayPrompts, PreferencePairs

__all__ = ["Pair", "load_pairs", "split_dialogue", "split_pairs", "EverydayPrompts", "PreferencePairs"]
