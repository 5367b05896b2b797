"""What the RAFT loop needs from a generative model family (causal LMs, diffusion models)."""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

from raft.sampling.samples import Sample
from raft.trainer.stage import TRAINING_STATS, TrainingJob, fit_stage


class Policy(ABC):
    """A model family behind the loop. Cheap to construct (validates its config); loads weights lazily.

    `checkpoint` is a folder that `finetune` wrote earlier, or None for the initial model.
    `modality` ("text" or "image") tells the loop whether text diversity metrics apply.
    Each method loads what it needs and frees it before returning, so stages stay independent
    and can later move to other engines or processes.
    """

    modality: str = "text"

    def prepare(self) -> None:  # noqa: B027 (a default that does nothing, not an abstract method)
        """Build what the policy needs before a run's first stage (the digits model pretrains itself)."""

    @abstractmethod
    def sample(
        self, checkpoint: Path | None, prompts: Sequence[tuple[int, str]], sampler: Any, out_dir: Path
    ) -> list[Sample]:
        """Draw `sampler.K` responses for each (prompt_idx, prompt). Image responses are saved under out_dir."""

    def finetune(
        self,
        checkpoint: Path | None,
        samples: Sequence[Sample],
        out_dir: Path,
        module: Callable[..., Any],
        trainer: Callable[..., Any],
    ) -> None:
        """Fine-tune `checkpoint` on `samples` with a Lightning module and trainer; save into out_dir. Every
        policy fits the same way (raft/trainer/stage.py); what differs is its `training_job`."""
        fit_stage(self, checkpoint, list(samples), Path(out_dir), module, trainer)

    @abstractmethod
    def training_job(self, checkpoint: Path | None, samples: list[Sample], out_dir: Path) -> TrainingJob:
        """Load `checkpoint` for training and turn `samples` into the module's inputs (model, rows, ...); the job
        says how to save the fitted model into out_dir."""

    def save_unchanged(self, checkpoint: Path | None, out_dir: Path) -> None:
        """Write `checkpoint` as it is into out_dir: a stage whose selection kept nothing passes its policy on."""
        if checkpoint is None:
            raise NotImplementedError(f"{type(self).__name__} cannot save its initial model unchanged")
        shutil.copytree(checkpoint, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(TRAINING_STATS))

    def log_probs(self, checkpoint: Path | None, samples: Sequence[Sample]) -> list[float]:
        """Sequence log-probability of each response given its prompt (KL-penalised ranking)."""
        raise NotImplementedError(f"{type(self).__name__} has no log-probabilities; use a selector without beta")

    def perplexity(self, checkpoint: Path | None, prompts: Sequence[str], references: Sequence[str]) -> float:
        """Perplexity of the policy on reference responses (fluency drift); NaN where it has no meaning."""
        return float("nan")

    def response_for_reward(self, sample: Sample, stage_dir: Path) -> Any:
        """What the reward scores: the text itself here; image policies open the saved file."""
        return sample.response
