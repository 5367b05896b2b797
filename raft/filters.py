"""Post-filters on the selected set before fine-tuning (paper appendix A.2).

When the reward model favours an artefact ('#', emoji), the selected set fills with it; RAFT can clean
or drop those samples before fine-tuning because generation and training are separate stages.
Each filter maps a list of Samples to the kept list; `apply_filters` counts what each one removed.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Callable, Sequence

from raft.metrics.diversity import word_tokenize
from raft.samples import Sample

log = logging.getLogger("raft")

# Emoji blocks: pictographs, emoticons, transport, supplemental symbols, dingbats, misc symbols, flags.
EMOJI_PATTERN = "[\U0001F1E6-\U0001F1FF\U0001F300-\U0001FAFF\u2600-\u27BF\uFE0F]"


class RegexFilter:
    """Drop samples whose response matches `pattern`, or strip the matches (and drop what ends up empty)."""

    def __init__(self, pattern: str, action: str = "drop", name: str | None = None):
        if action not in ("drop", "strip"):
            raise ValueError(f"filters: RegexFilter action must be 'drop' or 'strip', got {action!r}")
        try:
            self.regex = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"filters: RegexFilter pattern {pattern!r} is not a valid regex: {e}") from e
        self.action = action
        self.name = name or f"regex_{action}"

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        if self.action == "drop":
            return [s for s in samples if not self.regex.search(s.response)]
        kept = []
        for s in samples:
            cleaned = re.sub(r"[ \t]{2,}", " ", self.regex.sub("", s.response)).strip()
            if cleaned:
                kept.append(dataclasses.replace(s, response=cleaned) if cleaned != s.response else s)
        return kept


class CharacterFilter:
    """Drop samples with more than `max_count` of the given characters (or a larger share than `max_share`)."""

    def __init__(self, chars: str = "#", max_count: int | None = 0, max_share: float | None = None,
                 name: str | None = None):
        if not chars:
            raise ValueError("filters: CharacterFilter chars must not be empty")
        if max_count is None and max_share is None:
            raise ValueError("filters: CharacterFilter needs max_count or max_share")
        if max_count is not None and max_count < 0:
            raise ValueError(f"filters: CharacterFilter max_count must be >= 0, got {max_count}")
        if max_share is not None and not 0 <= max_share <= 1:
            raise ValueError(f"filters: CharacterFilter max_share must be in [0, 1], got {max_share}")
        self.chars, self.max_count, self.max_share = set(chars), max_count, max_share
        self.name = name or f"chars_{chars}"

    def _too_many(self, text: str) -> bool:
        count = sum(1 for ch in text if ch in self.chars)
        if self.max_count is not None and count > self.max_count:
            return True
        return self.max_share is not None and bool(text) and count / len(text) > self.max_share

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        return [s for s in samples if not self._too_many(s.response)]


class LengthFilter:
    """Keep responses with min_words..max_words word tokens (the tokenisation of the diversity metrics)."""

    def __init__(self, min_words: int = 1, max_words: int | None = None, name: str = "length"):
        if min_words < 0:
            raise ValueError(f"filters: LengthFilter min_words must be >= 0, got {min_words}")
        if max_words is not None and max_words < min_words:
            raise ValueError(f"filters: LengthFilter max_words={max_words} is below min_words={min_words}")
        self.min_words, self.max_words, self.name = min_words, max_words, name

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        def fits(n: int) -> bool:
            return n >= self.min_words and (self.max_words is None or n <= self.max_words)

        return [s for s in samples if fits(len(word_tokenize(s.response)))]


class Deduplicate:
    """Keep the first of responses that are identical after trimming white space (per prompt or overall)."""

    def __init__(self, per_prompt: bool = False, name: str = "duplicates"):
        self.per_prompt, self.name = per_prompt, name

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        seen, kept = set(), []
        for s in samples:
            key = (s.prompt_idx if self.per_prompt else None, " ".join(s.response.split()))
            if key not in seen:
                seen.add(key)
                kept.append(s)
        return kept


def apply_filters(filters: Sequence[Callable[[list[Sample]], list[Sample]]],
                  samples: Sequence[Sample]) -> tuple[list[Sample], dict[str, int]]:
    """Run the filters in order; return the kept samples and how many each filter removed (by name)."""
    kept, removed = list(samples), {}
    for i, f in enumerate(filters):
        name = getattr(f, "name", type(f).__name__)
        if name in removed:
            name = f"{name}_{i}"  # two filters of the same kind keep separate counts
        before = len(kept)
        kept = list(f(kept))
        removed[name] = before - len(kept)
    return kept, removed
