"""Up-front checks of the `_partial_` groups (module, trainer, logger).

Hydra builds these as partials that a stage calls minutes in, with the model; checking them when the task is
built makes a bad value fail at start-up, in one line, before any model loads. A class takes part by having a
static `check_arguments(arguments)` that its own constructor calls too (one list of rules, two callers).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Mapping

from raft.infra.distributed import world_size
from raft.infra.partials import parts
from raft.trainer.new_trainer import new_trainer


def arguments(partial: functools.partial, field: str) -> Mapping[str, Any]:
    """The keyword arguments the partial (nested ones too) will be called with, defaults filled in; unknown keys
    raise."""
    func, args, keywords = parts(partial)
    try:
        bound = inspect.signature(func).bind_partial(*args, **keywords)
    except TypeError as error:
        raise ValueError(f"{field}: {error}") from None
    bound.apply_defaults()
    values = dict(bound.arguments)
    for name, parameter in inspect.signature(func).parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:  # `**sft`: the keys go on to a base class
            values.update(values.pop(name, {}))
    if isinstance(func, type):  # ... whose defaults fill what the subclass does not name
        for base in func.__mro__[1:]:
            init = base.__dict__.get("__init__")
            if init is not None and init is not object.__init__:
                for name, parameter in inspect.signature(init).parameters.items():
                    if parameter.default is not inspect.Parameter.empty:
                        values.setdefault(name, parameter.default)
    return values


def check_partial(partial: Any, field: str) -> None:
    """Check a module / trainer / logger partial's values now (a user's class without rules: its keys only)."""
    if not isinstance(partial, functools.partial):
        return  # None, or a ready object: nothing deferred to check
    import pytorch_lightning as pl

    func = parts(partial)[0]
    if isinstance(func, type) and issubclass(func, pl.Trainer):
        return check_trainer(partial, field)
    values = arguments(partial, field)
    check = getattr(func, "check_arguments", None)
    if check is None:
        return
    try:
        check(values)
    except ValueError as error:  # the rules name the group ("module.lr"); a pipeline stage's is deeper
        text, group = str(error), field.rsplit(".", 1)[-1]
        raise ValueError(field + text[len(group) :] if text.startswith(group + ".") else text) from None


def check_trainer(partial: functools.partial, field: str) -> None:
    """Build the Trainer once (cheap: no model, no processes) so Lightning's own checks run now, plus raft's:
    a stage fits for a fixed number of epochs, and a multi-device fit needs its processes started by a launcher."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    arguments(partial, field)
    try:
        trainer = new_trainer(partial)
    except (MisconfigurationException, ValueError, TypeError) as error:
        raise ValueError(f"{field}: {str(error).strip().splitlines()[0]}") from None
    # None is Lightning's default (1000 epochs); -1 (endless) and 0 leave a stage that never ends or never trains
    if trainer.max_epochs is not None and trainer.max_epochs < 1 and trainer.max_steps < 1:
        raise ValueError(
            f"{field}.max_epochs must be >= 1 (each stage fits for a set number of epochs), got {trainer.max_epochs}"
        )
    processes = trainer.num_devices * trainer.num_nodes
    nodes = f" x num_nodes={trainer.num_nodes}" if trainer.num_nodes > 1 else ""
    if processes > world_size():
        raise ValueError(
            f"{field}.devices={trainer.num_devices}{nodes} needs {processes} processes, "
            f"but raft was started as {world_size()}: launch it with "
            f"`torchrun --nproc_per_node {trainer.num_devices} -m raft ...` "
            "(Lightning's own launcher would run the whole RAFT loop in every process)"
        )


def require_module(module: Any, cls: type, task: str) -> None:
    """A task that works with its own Lightning module only (task=ppo: module=ppo) says so at start-up."""
    builds = parts(module)[0]
    if not (isinstance(builds, type) and issubclass(builds, cls)):
        raise ValueError(
            f"task={task} needs module={task} ({cls.__module__}.{cls.__name__}), "
            f"got {getattr(builds, '__name__', builds)}"
        )
