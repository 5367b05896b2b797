"""One fine-tuning stage of any policy, text or image: the policy prepares the job (loads its model, turns the
stage's samples into the module's inputs, knows how to save), and this file runs it the same way for all of them:
the module from its config partial, the fit to completion (`fit`), the whole weights gathered on rank 0 under a
sharding strategy, the save and the fit's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from raft.infra import strict_json
from raft.infra.distributed import is_rank_zero
from raft.trainer.fit import fit
from raft.trainer.full_weights import full_state_dict

TRAINING_STATS = "training_stats.json"  # a checkpoint's record of its fit (RAFT++ / GRPO statistics)


@dataclass
class TrainingJob:
    """What a policy hands the stage: the module's inputs besides its config (model, rows, ...), and how to write
    the fitted model into a folder (`state`: the whole weights gathered from a sharding strategy, else None)."""

    inputs: dict[str, Any]
    save: Callable[[Path, dict | None], None]
    weights_prefix: str = "model."  # the module attribute that holds the model, as its state dict names it


@runtime_checkable
class ReportsTrainingStats(Protocol):
    """A module that summarises its fit (clip fraction, approximate KL, ...)."""

    def training_stats(self) -> dict: ...


class Trainable(Protocol):
    def training_job(self, checkpoint: Path | None, samples: list, out_dir: Path) -> TrainingJob: ...


def fit_stage(
    policy: Trainable,
    checkpoint: Path | None,
    samples: list,
    out_dir: Path,
    module: Callable[..., Any],
    trainer: Callable[..., Any],
) -> None:
    """Fine-tune `checkpoint` on `samples` into `out_dir` (a scratch folder the caller renames when it is done)."""
    job = policy.training_job(checkpoint, samples, Path(out_dir))
    lightning_module = module(**job.inputs)
    fitted = fit(trainer, lightning_module, default_root_dir=str(out_dir))
    state = full_state_dict(fitted, job.weights_prefix)  # FSDP / DeepSpeed: every rank gathers, rank 0 receives
    if is_rank_zero():  # under DDP every rank holds the same weights; one writes them
        job.save(Path(out_dir), state)
        if isinstance(lightning_module, ReportsTrainingStats):
            (Path(out_dir) / TRAINING_STATS).write_text(strict_json.dumps(lightning_module.training_stats()))
