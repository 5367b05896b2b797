"""Post-filters on the selected set before fine-tuning (paper appendix A.2).

When the reward model favours an artefact ('#', emoji), the selected set fills with it; RAFT can clean
or drop those samples before fine-tuning because generation and training are separate stages.
Each filter maps a list of Samples to the kept list; `apply_filters` counts what each one removed.
Image filters (`needs_stage_dir = True`) also get the stage folder, since an image sample's response is
the image's path relative to it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from raft.evaluation.metrics.diversity import word_tokenize
from raft.sampling.samples import Sample

log = logging.getLogger("raft")

# Emoji blocks: pictographs, emoticons, transport, supplemental symbols, dingbats, misc symbols, flags.
EMOJI_PATTERN = "[\U0001f1e6-\U0001f1ff\U0001f300-\U0001faff\u2600-\u27bf\ufe0f]"


class RegexFilter:
    """Drop samples whose response matches `pattern`, or strip the matches (and drop what ends up empty).

    A stripped sample loses its sampled token ids (`Sample.with_response`): fine-tuning then tokenises the
    cleaned text, ending it with EOS only where the model stopped, instead of training on the ids it cleaned."""

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
            if not self.regex.search(s.response):
                kept.append(s)  # nothing to strip: the text and the ids the model sampled stay as they are
                continue
            cleaned = re.sub(r"[ \t]{2,}", " ", self.regex.sub("", s.response)).strip()
            if cleaned:
                # the space that led the response stays (raw-text prompts end before it, as the model wrote it)
                lead = s.response[: len(s.response) - len(s.response.lstrip())]
                kept.append(s.with_response(lead + cleaned))  # its ids go: the cleaned text is what trains
        return kept


class CharacterFilter:
    """Drop samples with more than `max_count` of the given characters (or a larger share than `max_share`)."""

    def __init__(
        self, chars: str = "#", max_count: int | None = 0, max_share: float | None = None, name: str | None = None
    ):
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


class _ImageFilter:
    """Base of the image post-filters: keep a sample when `keeps(grey pixels in [0, 1])` says so.

    Images are read as grey ("L"), ink bright on dark, as the digits policy writes them."""

    needs_stage_dir = True
    name = "image"

    def keeps(self, pixels: np.ndarray) -> bool:
        raise NotImplementedError

    def __call__(self, samples: Sequence[Sample], stage_dir: str | Path) -> list[Sample]:
        kept = []
        for s in samples:
            path = Path(stage_dir) / s.response
            if not path.is_file():
                raise FileNotFoundError(
                    f"filters: {self.name} found no image for sample {s.prompt_idx}/{s.sample_idx} at {path}"
                )
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
            if self.keeps(pixels):
                kept.append(s)
        return kept


class DarkBackgroundFilter(_ImageFilter):
    """Drop images whose border (the outer `border` pixels on each side) has mean brightness above `max_mean`.

    Digits are bright ink on a black background; a grey or textured border is the reward-hacking signature."""

    def __init__(self, max_mean: float = 0.15, border: int = 2, name: str = "dark_background"):
        if not 0 <= max_mean <= 1:
            raise ValueError(f"filters: DarkBackgroundFilter max_mean must be in [0, 1], got {max_mean}")
        if border < 1:
            raise ValueError(f"filters: DarkBackgroundFilter border must be >= 1, got {border}")
        self.max_mean, self.border, self.name = max_mean, border, name

    def keeps(self, pixels: np.ndarray) -> bool:
        b = self.border
        ring = np.ones(pixels.shape, dtype=bool)
        ring[b:-b, b:-b] = False  # an image no larger than 2*border is all border
        return float(pixels[ring].mean()) <= self.max_mean


class InkShareFilter(_ImageFilter):
    """Keep images whose share of ink pixels (brightness above `threshold`) is within [min_share, max_share]."""

    def __init__(
        self, min_share: float = 0.05, max_share: float = 0.5, threshold: float = 0.5, name: str = "ink_share"
    ):
        if not 0 <= min_share <= max_share <= 1:
            raise ValueError(
                f"filters: InkShareFilter needs 0 <= min_share <= max_share <= 1, got {min_share}, {max_share}"
            )
        if not 0 <= threshold < 1:
            raise ValueError(f"filters: InkShareFilter threshold must be in [0, 1), got {threshold}")
        self.min_share, self.max_share, self.threshold, self.name = min_share, max_share, threshold, name

    def keeps(self, pixels: np.ndarray) -> bool:
        return self.min_share <= float((pixels > self.threshold).mean()) <= self.max_share


def apply_filters(
    filters: Sequence[Callable[..., list[Sample]]], samples: Sequence[Sample], stage_dir: str | Path | None = None
) -> tuple[list[Sample], dict[str, int]]:
    """Run the filters in order; return the kept samples and how many each filter removed (by name).

    `stage_dir` is the folder image paths are relative to; filters with `needs_stage_dir` require it."""
    kept, removed = list(samples), {}
    for i, f in enumerate(filters):
        name = getattr(f, "name", type(f).__name__)
        if name in removed:
            name = f"{name}_{i}"  # two filters of the same kind keep separate counts
        before = len(kept)
        if getattr(f, "needs_stage_dir", False):
            if stage_dir is None:
                raise ValueError(
                    f"filters: {name} reads images and needs the stage folder (apply_filters(..., stage_dir))"
                )
            kept = list(f(kept, stage_dir))
        else:
            kept = list(f(kept))
        removed[name] = before - len(kept)
    return kept, removed
