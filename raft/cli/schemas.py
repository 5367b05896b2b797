"""Typed schemas of the configs where a wrong type used to surface late: the sampler, the selector and the run
settings of the iterative tasks. Registered in Hydra's ConfigStore (group `schema/...`) when this module is
imported (raft/cli/resolvers.py imports it, and everything that composes raft's configs imports that); a YAML
file names its schema first in its defaults list, e.g. `- /schema/sampler/lm@_here_`, and Hydra validates the
file, the presets and the command line against it: `sampler.K=four` stops with `full_key: sampler.K`.

A field with `MISSING` is typed here and valued in the YAML files (the sampler's and selector's values, each
documented where it is set). `RunnerSchema` and `TextRunnerSchema` also hold their values: the run settings
every iterative task shares are written here once, and a task file lists only what it adds. Each field matches a
constructor argument (raft/sampling, raft/selection, raft/tasks); a schema declares no key a file does not set,
so the composed configs keep their keys."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# OmegaConf reads the annotations at runtime, so they are typing's Dict / List / Optional (no `from __future__`).


# -- sampler group ---------------------------------------------------------------------------------------------
@dataclass
class LMSamplerSchema:
    """raft.sampling.sampler.Sampler (sampler=default, paper, ppo)."""

    _target_: str = MISSING
    K: int = MISSING
    temperature: float = MISSING
    top_k: int = MISSING
    top_p: float = MISSING
    max_new_tokens: int = MISSING
    batch_size: int = MISSING
    stop: List[str] = MISSING
    truncated: str = MISSING
    engine: str = MISSING
    generation_kwargs: Dict[str, Any] = MISSING


@dataclass
class DiffusionSamplerSchema:
    """raft.sampling.image.DiffusionSampler (sampler=diffusion, and task=diffusion_raft's eval_sampler)."""

    _target_: str = MISSING
    K: int = MISSING
    steps: int = MISSING
    guidance_scale: float = MISSING
    resolution: int = MISSING
    scheduler: str = MISSING
    batch_size: int = MISSING
    seed: int = MISSING


# -- selector group (raft/selection/selectors.py) --------------------------------------------------------------
@dataclass
class KeepAllSchema:
    """KeepAll (selector=all)."""

    _target_: str = MISSING
    mixed_prompts_only: bool = MISSING


@dataclass
class KLRankingSchema:
    """LocalRanking with a KL penalty (selector=kl), which sets beta only."""

    _target_: str = MISSING
    beta: float = MISSING


@dataclass
class LocalRankingSchema(KLRankingSchema):
    """LocalRanking (selector=local)."""

    mixed_prompts_only: bool = MISSING


@dataclass
class GlobalRankingSchema:
    """GlobalRanking (selector=global)."""

    _target_: str = MISSING
    beta: float = MISSING
    acceptance_ratio: Optional[float] = MISSING


@dataclass
class ThresholdSchema:
    """ThresholdSelection (selector=threshold)."""

    _target_: str = MISSING
    threshold: float = MISSING
    mixed_prompts_only: bool = MISSING


# -- the iterative tasks' run settings (raft/tasks/runner.py) --------------------------------------------------
@dataclass
class RunnerSchema:
    """What every iterative task takes (task=raft, grpo, reinforce_rej, ppo, diffusion_raft): the runner's
    settings and the parts of its step, each from the group of the same name."""

    _target_: str = MISSING
    output_dir: str = "${hydra:runtime.output_dir}"
    policy: Any = "${model}"
    reward: Any = "${reward}"
    sampler: Any = "${sampler}"
    module: Any = "${module}"
    trainer: Any = "${trainer}"
    data: Any = "${data}"
    logger: Any = "${logger}"
    iterations: int = 4  # stages (RAFT) or PPO iterations
    batch_size: int = 32  # the paper's b: prompts per iteration
    keep_checkpoints: int = 1  # newest N iteration checkpoints kept (0 = all)
    seed: int = "${seed}"  # type: ignore[assignment]  (an interpolation, resolved to an int)
    torch_threads: Optional[int] = None  # CPU threads for torch; 1 for small models on shared cores
    heap_mmap_threshold_mb: Optional[float] = None  # CPU: 1 (MiB) hands freed activations back to the OS


@dataclass
class TextRunnerSchema(RunnerSchema):
    """The language-model tasks (task=raft, grpo, reinforce_rej, ppo): held-out evaluation of the text policy,
    and a start from a checkpoint folder."""

    evaluator: Any = "${evaluator}"
    init_checkpoint: Optional[str] = None  # start from this checkpoint folder (e.g. an SFT stage), not the model


@dataclass
class RaftTaskSchema(TextRunnerSchema):
    """raft.tasks.raft.RaftTask (task=raft, and grpo / reinforce_rej on it); values in raft/conf/task/raft.yaml."""

    selector: Any = MISSING
    filters: Any = MISSING
    monitor: Any = MISSING
    teacher: Any = MISSING
    track_kl: bool = MISSING
    dynamic_sampling: bool = MISSING
    dynamic_sampling_max_batches: int = MISSING


@dataclass
class PPOTaskSchema(TextRunnerSchema):
    """raft.tasks.ppo.PPOTask (task=ppo); values in raft/conf/task/ppo.yaml."""

    precision: Any = MISSING  # the trainer's (Lightning takes "32-true", "bf16-mixed", 32, 16, ...)


@dataclass
class DiffusionRaftTaskSchema(RunnerSchema):
    """raft.tasks.diffusion_raft.DiffusionRaftTask (task=diffusion_raft); values in its YAML file."""

    selector: Any = MISSING
    filters: Any = MISSING
    track_kl: bool = MISSING
    eval_rewards: Optional[Dict[str, Any]] = MISSING
    eval_sampler: DiffusionSamplerSchema = field(default_factory=DiffusionSamplerSchema)
    grid_prompts: int = MISSING
    grid_samples: int = MISSING


SCHEMAS = {
    "schema/sampler": {"lm": LMSamplerSchema, "diffusion": DiffusionSamplerSchema},
    "schema/selector": {
        "keep_all": KeepAllSchema,
        "kl_ranking": KLRankingSchema,
        "local_ranking": LocalRankingSchema,
        "global_ranking": GlobalRankingSchema,
        "threshold": ThresholdSchema,
    },
    "schema/task": {"raft": RaftTaskSchema, "ppo": PPOTaskSchema, "diffusion_raft": DiffusionRaftTaskSchema},
}


def register() -> None:
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)


register()
