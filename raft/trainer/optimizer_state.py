"""The optimiser's state carried from one stage's fit to the next (`module.optimizer_state: run`).

A RAFT stage is a fresh Lightning fit. Restarting AdamW each stage is RAFT's own recipe (the paper fine-tunes
each stage anew), but not GRPO's or RAFT++'s: their references keep one optimiser for the whole run, and a
fresh Adam's first update is lr * sign(g) whatever the gradient's size, so at one update a stage every step
would be sign-SGD. With `run`, each stage saves its optimiser's and learning-rate schedule's state inside its
checkpoint folder (so a resumed run continues it) and the next stage loads it before its first step, through
Lightning's strategy (which gathers and re-shards it under FSDP).
"""

from __future__ import annotations

from pathlib import Path

import torch

FILE = "optimizer_state.pt"
SCOPES = ("stage", "run")


def check_scope(scope: str, scheduler: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"module.optimizer_state must be one of {SCOPES}, got {scope!r}")
    if scope == "run" and scheduler == "linear":
        raise ValueError(
            "module.scheduler=linear decays to 0 within each stage, which a run-long optimiser cannot follow: "
            "use module.scheduler=constant with module.optimizer_state=run"
        )


def load(trainer, folder: Path | None) -> bool:
    """Load the state a previous stage saved in `folder` into the fit's optimiser and schedules (False: none)."""
    path = Path(folder) / FILE if folder is not None else None
    if path is None or not path.is_file():
        return False
    saved = torch.load(path, map_location="cpu", weights_only=True)
    trainer.strategy.load_optimizer_state_dict({"optimizer_states": saved["optimizers"]})
    for config, state in zip(trainer.lr_scheduler_configs, saved["schedulers"]):
        config.scheduler.load_state_dict(state)
    return True


def save(trainer, folder: Path) -> None:
    """Write the fit's optimiser and schedule state into `folder` (every rank gathers, rank 0 writes)."""
    optimizers = [trainer.strategy.optimizer_state(o) for o in trainer.optimizers]
    schedulers = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
    if trainer.is_global_zero:
        Path(folder).mkdir(parents=True, exist_ok=True)
        torch.save({"optimizers": optimizers, "schedulers": schedulers}, Path(folder) / FILE)
