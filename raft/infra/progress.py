"""What the progress bars say: which iteration of how many, and which stage, so a glance tells where a run is.

The runner sets the iteration's label around its step; the sampling bars and the fine-tuning bar (a Lightning
`TQDMProgressBar` that names its stage) put it first. Model loading is kept quiet (`quiet_loading`): loading
the same small model again is not news.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from pytorch_lightning.callbacks import TQDMProgressBar

_where = {"iteration": "", "stage": ""}


def label(activity: str) -> str:
    """What a bar shows: the iteration and the stage it belongs to ("iteration 2/4 · KL samples"), else `activity`."""
    return " · ".join(part for part in (_where["iteration"], _where["stage"] or activity) if part)


@contextmanager
def _within(key: str, text: str) -> Iterator[None]:
    before, _where[key] = _where[key], text
    try:
        yield
    finally:
        _where[key] = before


def iteration(t: int, total: int):
    """Bars inside belong to iteration t (of `total`)."""
    return _within("iteration", f"iteration {t + 1}/{total}")


def stage(name: str):
    """Bars inside belong to this stage ("KL samples", "evaluation"), whatever they do."""
    return _within("stage", name)


class StageProgressBar(TQDMProgressBar):
    """Lightning's bar, its description naming the iteration and the fine-tuning epoch."""

    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        self.train_progress_bar.set_description(label(f"fine-tuning, epoch {trainer.current_epoch + 1}{epochs}"))


def quiet_loading() -> None:
    """No bars for reading weights (transformers) or files (datasets)."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def eta(done: int, total: int, seconds_so_far: float) -> str:
    """ "ETA 4 min" from the mean time of the iterations done so far ("" before the first, or when all are done)."""
    if done <= 0 or done >= total:
        return ""
    left = seconds_so_far / done * (total - done)
    return f"ETA {left / 60:.0f} min" if left >= 90 else f"ETA {left:.0f} s"
