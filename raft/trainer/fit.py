"""The one place raft runs a Lightning fit (every stage, method and model: `fit`), refusing a result that did not
finish; the optimiser rules every fitted module shares.

On SIGTERM (a cluster's pre-emption, `kill`) Lightning stops gracefully and `fit` returns as if done.
A stage that saved that model would be taken as finished on resume; raising instead lets the stage's
atomic folder be discarded, so the next run redoes it.
"""

from __future__ import annotations

import signal

import torch

from raft.trainer.new_trainer import new_trainer


def check_optimiser(a, lr: str = "lr") -> None:
    """The optimiser rules every fine-tuning module shares: module.<lr> > 0, module.weight_decay >= 0."""
    if a[lr] <= 0:
        raise ValueError(f"module.{lr} must be > 0, got {a[lr]}")
    if a["weight_decay"] < 0:
        raise ValueError(f"module.weight_decay must be >= 0, got {a['weight_decay']}")


class NonFiniteLoss(FloatingPointError):
    """A training loss went NaN or infinite: the stage's weights are garbage and must not be saved."""


def finite(loss: torch.Tensor, module) -> torch.Tensor:
    """`loss`, or an error that ends the fit (so no checkpoint of the stage is saved as finished)."""
    if not torch.isfinite(loss.detach()).all():
        step = module.trainer.global_step if module._trainer is not None else "?"
        raise NonFiniteLoss(
            f"{type(module).__name__}: training loss is {loss.item()} at step {step}; the stage was "
            "not saved (lower module.lr, check the data, or train in fp32: trainer.precision=32)"
        )
    return loss


class TrainingInterrupted(RuntimeError):
    """Training stopped before the end; its partial result must not be saved."""


def fit(make_trainer, module, **trainer_kwargs):
    """Fit `module` with a fresh Trainer from the config's partial (`new_trainer`) to the end, or raise; the
    fitted Trainer (its strategy gathers sharded weights)."""
    trainer = new_trainer(make_trainer, **trainer_kwargs)
    try:
        trainer.fit(module)
    except SystemExit:
        if not trainer.interrupted:
            raise
        if trainer.received_sigterm:
            raise TrainingInterrupted(
                "training was stopped before it finished (SIGTERM); nothing was saved for this stage; run the same "
                "command again to resume"
            ) from None
        # Lightning turns Ctrl-C in a fit into sys.exit(1) and ignores SIGINT from then on: give Ctrl-C back and
        # raise it as what it was, so the command line can say how to resume
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt("stopped during fine-tuning") from None
    if trainer.received_sigterm or trainer.interrupted:
        raise TrainingInterrupted(
            "training was stopped before it finished (SIGTERM); nothing was saved for "
            "this stage; run the same command again to resume"
        )
    return trainer
