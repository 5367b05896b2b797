"""The unit of data that flows between the stages of the loop, and its on-disk form."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from raft.infra import strict_json
from raft.infra.atomic import atomic_write_text


@dataclass
class Sample:
    """One response to one prompt. Prompts are keyed by index, never by text (equal prompts exist).

    Text policies also record the exact tokens: `prompt_ids` as the model was given them and
    `response_ids` as it produced them, up to and including whatever stopped it (an EOS / end-of-turn id,
    or the tokens of a stop string). Training and log-probabilities use these ids; `response` (the
    decoded text before the stop) is what rewards, metrics and reports read. `finish_reason` is
    "stop" (the model stopped; `stop_reason` says on what) or "length" (cut at max_new_tokens).
    """

    prompt_idx: int
    prompt: str
    response: str  # text, or an image path relative to the stage folder
    sample_idx: int = 0
    reward: float | None = None
    logp: float | None = None  # log p_theta(response | prompt) under the sampling policy
    ref_logp: float | None = None  # the same under the initial policy (KL-penalised ranking)
    prompt_ids: list[int] | None = None
    response_ids: list[int] | None = None
    finish_reason: str | None = None  # "stop" | "length"; None: not generated here (e.g. dataset text)
    stop_reason: int | str | None = None  # the stop token id or stop string that ended the response

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def as_text(self) -> "Sample":
        """The same sample without its token ids: for a model whose tokenizer did not produce them.

        `finish_reason` and `stop_reason` stay: a text-only sample is trained with an EOS only where the
        model stopped (`truncated` decides), never after a response cut at max_new_tokens."""
        return dataclasses.replace(self, prompt_ids=None, response_ids=None)

    def with_response(self, response: str) -> "Sample":
        """The same sample with other text (a filter cleaned it): the sampled ids no longer spell it, so they
        go and the policy tokenises the new text as it would have produced it; the finish status stays, so
        the new text ends with EOS exactly where the model stopped."""
        return self if response == self.response else dataclasses.replace(self.as_text(), response=response)


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    lines = (strict_json.dumps(dataclasses.asdict(s), ensure_ascii=False) for s in samples)
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


def read_samples(path: Path) -> list[Sample]:
    with open(path, encoding="utf-8") as f:
        return [Sample(**json.loads(line)) for line in f if line.strip()]
