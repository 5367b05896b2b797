"""A new Lightning Trainer from the config's Trainer partial, with its own copy of a Strategy object.

Hydra builds a `trainer.strategy` given as an object (`FSDPStrategy(sharding_strategy=...)`,
`DeepSpeedStrategy(stage=3, offload_optimizer=True)`) once, inside the partial. Lightning binds a strategy to the
first Trainer that uses it (its accelerator, the model it wrapped), so the second Trainer refused it ("accelerator
set through both strategy class and accelerator flag") and the first stage's model stayed referenced. Every
Trainer raft builds (the up-front check's, then one per stage) takes a fresh copy of the unused original instead.
"""

from __future__ import annotations

import copy
from typing import Any, Callable


def new_trainer(make: Callable[..., Any], **kwargs: Any) -> Any:
    """`make(**kwargs)`, a Strategy object among `make`'s bound keywords copied first. A wrapper around a partial
    (the tracker's) passes its keywords through here itself."""
    from pytorch_lightning.strategies import Strategy

    strategy = (getattr(make, "keywords", None) or {}).get("strategy")
    if "strategy" not in kwargs and isinstance(strategy, Strategy):
        kwargs["strategy"] = copy.deepcopy(strategy)
    return make(**kwargs)
