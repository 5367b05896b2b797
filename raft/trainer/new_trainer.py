"""A new Lightning Trainer from the config's Trainer partial, with its own copies of the objects the partial binds.

Hydra builds `trainer.callbacks` (raft's progress bar) and a `trainer.strategy` given as an object
(`FSDPStrategy(sharding_strategy=...)`, `DeepSpeedStrategy(stage=3, offload_optimizer=True)`) once, inside the
partial, and Lightning binds them to the Trainer that uses them. Shared, they kept each finished stage's Trainer,
and with it the fine-tuned model and its optimizer states (2.3 GB for a 135M model), alive into the next stage;
a shared strategy was refused by the second Trainer ("accelerator set through both strategy class and accelerator
flag"). Every Trainer raft builds (the up-front check's, then one per stage) gets fresh copies of the unused
originals instead.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from raft.infra.partials import parts

BOUND = ("strategy", "callbacks")  # objects Lightning attaches to one Trainer


def bound_copy(make: Callable[..., Any], name: str) -> Any:
    """A fresh copy of what the partial `make` binds as `name` (None when it binds nothing there)."""
    return copy.deepcopy(parts(make)[2].get(name))


def new_trainer(make: Callable[..., Any], **kwargs: Any) -> Any:
    """`make(**kwargs)` with copies of the partial's strategy and callbacks. A wrapper around a partial (the
    tracker's) comes here for its own call too."""
    for name in BOUND:
        if name not in kwargs and (value := bound_copy(make, name)) is not None:
            kwargs[name] = value
    return make(**kwargs)
