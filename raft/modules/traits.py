"""What a task must know of a Lightning module before it builds one: a class attribute `traits`, read from the
module's class or from the config's partial of it. A user's module without it gets the defaults (an SFT-like
module that any task may feed with the selected samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raft.infra.partials import parts


@dataclass(frozen=True)
class MethodTraits:
    for_task: str | None = None  # the one task that can feed it (its fit needs that task's inputs)
    trains_on_every_sample: bool = False  # advantages need the unselected samples too: the selector must keep all
    group_relative: bool = False  # it compares a prompt's K samples, so K >= 2
    takes_reference: bool = False  # the task binds `reference`, a loader of the initial policy (its KL term)


def module_class(module: Any) -> Any:
    """The class a module config builds (`_partial_: true` gives a partial of it, which a task may wrap again)."""
    return parts(module)[0]


def traits_of(module: Any) -> MethodTraits:
    return getattr(module_class(module), "traits", MethodTraits())
