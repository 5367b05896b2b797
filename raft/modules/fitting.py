"""Run a Lightning fit and refuse a result that did not finish.

On SIGTERM (a cluster's pre-emption, `kill`) Lightning stops gracefully and `fit` returns as if done.
A stage that saved that model would be taken as finished on resume; raising instead lets the stage's
atomic folder be discarded, so the next run redoes it.
"""

from __future__ import annotations


class TrainingInterrupted(RuntimeError):
    """Training stopped before the end; its partial result must not be saved."""


def fit_to_completion(trainer, module) -> None:
    trainer.fit(module)
    if trainer.received_sigterm or trainer.interrupted:
        raise TrainingInterrupted(
            "training was stopped before it finished (SIGTERM); nothing was saved for "
            "this stage; run the same command again to resume"
        )
