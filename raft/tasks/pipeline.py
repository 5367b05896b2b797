"""`task=pipeline`: the paper's recipe in one run: SFT -> reward model -> RAFT (and/or PPO) -> evaluation.

Later stages read what earlier ones wrote (the SFT checkpoint, the reward model), so each stage is
built from its config only when its turn comes. The shared groups are built once up front, so bad
input still fails before any model loads. Each stage resumes from its own folder.
"""

from __future__ import annotations

from typing import Any, Mapping

from hydra.utils import instantiate

from raft.trainer.checks import check_partial


class Pipeline:
    def __init__(self, stages: Mapping[str, Any], validate: Mapping[str, Any] | None = None):
        if not stages:
            raise ValueError("task.stages is empty")
        for field, node in (validate or {}).items():  # cheap constructors check the user's values; partials too
            check_partial(instantiate(node), field)
        for name, config in stages.items():  # each stage's own Lightning module / trainer / logger, likewise
            for key in ("module", "trainer", "logger"):
                if config is not None and config.get(key) is not None:
                    check_partial(instantiate(config[key]), f"task.stages.{name}.{key}")
        self.stages = stages

    def run(self) -> dict:
        results = {}
        for name, config in self.stages.items():
            if config is None:  # a stage switched off with task.stages.<name>=null
                continue
            print(f"\n=== pipeline stage: {name} ===", flush=True)
            results[name] = instantiate(config, _convert_="all").run()
        return results
