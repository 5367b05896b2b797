"""A teacher that replays another run's samples, stage by stage (the paper's Table 7 distillation).

The paper's student learned from the samples that LLaMA-7B drew during its own RAFT-K32 run, so the
teacher improved from stage to stage. `RecordedSamples(run_dir)` hands stage t of the student the
`iter_t/samples.jsonl` that stage t of the teacher's run wrote: no sampling cost, and the same data the
teacher trained on. The student's run must ask for the same prompts (same data, seed and batch size) and K.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from raft.policies.base import Policy
from raft.sampling.samples import Sample, read_samples


class RecordedSamples(Policy):
    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)

    def sample(
        self, checkpoint: Path | None, prompts: Sequence[tuple[int, str]], sampler: Any, out_dir: Path
    ) -> list[Sample]:
        path = self.run_dir / Path(out_dir).name / "samples.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"the teacher run has no {path}: run it first (as many stages as this one)")
        recorded = read_samples(path)
        asked = dict(prompts)
        have = {s.prompt_idx: s.prompt for s in recorded}
        if have != asked:
            raise ValueError(
                f"{path} answers other prompts than this stage asks for: the teacher run needs the "
                "same data, seed and task.batch_size as this one"
            )
        counts = {i: sum(s.prompt_idx == i for s in recorded) for i in asked}
        if set(counts.values()) != {sampler.K}:
            raise ValueError(f"{path} has {sorted(set(counts.values()))} samples per prompt, sampler.K is {sampler.K}")
        return [replayed(s) for s in recorded]

    def training_job(self, *args, **kwargs):
        raise TypeError("RecordedSamples replays a finished run; it cannot be fine-tuned (use it as task.teacher)")


def replayed(s: Sample) -> Sample:
    """A teacher's recorded sample as the student's stage gets it: the text and how it ended.

    The rewards and log-probabilities are the student run's to compute (re-scored), the token ids are the
    teacher tokenizer's (the student tokenises the text its own way). `finish_reason` / `stop_reason` stay:
    a response the teacher left cut at max_new_tokens must not be trained with an EOS, nor counted finished
    by `sampler.truncated=drop` or the capped share."""
    return dataclasses.replace(s.as_text(), reward=None, logp=None, ref_logp=None)
