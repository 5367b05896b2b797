"""Every config file and every preset composes; bad values fail with one line before any model loads."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

import raft.cli.resolvers  # noqa: F401

CONF = Path(__file__).resolve().parent.parent / "raft" / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [  # `_name.yaml`: a part other files include (experiment/_seeds), not an option of its own
    (g, str(f.relative_to(CONF / g).with_suffix("")))
    for g in GROUPS
    for f in sorted((CONF / g).rglob("*.yaml"))
    if not f.name.startswith("_")
]
EXPERIMENTS = [o for g, o in OPTIONS if g == "experiment"]


def compose_with(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_default_config_composes_with_every_group():
    cfg = compose_with()
    for group in (
        "task",
        "model",
        "reward",
        "sampler",
        "selector",
        "data",
        "module",
        "trainer",
        "logger",
        "filters",
        "evaluator",
        "monitor",
    ):
        assert group in cfg, group
    assert cfg.task._target_ == "raft.tasks.raft.RaftTask"


def test_bf16_defaults_follow_the_hardware():
    """bf16 only where the device does it natively: on an AVX2-only CPU bf16 matmuls are emulated (47x slower
    than fp32 on this project's 2-core EPYC), and the defaults were bf16 everywhere."""
    import torch

    from raft.infra.devices import native_bf16

    native = native_bf16()
    if not torch.cuda.is_available():
        probes = [torch.cpu._is_amx_tile_supported(), torch.cpu._is_avx512_bf16_supported()]
        assert native == any(probes)
    cfg = compose_with()
    assert cfg.trainer.precision == ("bf16-mixed" if native else "32-true")
    assert cfg.model.sample_dtype == ("bfloat16" if native else "float32")
    digits = compose_with("experiment=digits_alignment").model
    assert digits.bf16 is native and digits.pretrain_trainer.precision == cfg.trainer.precision
    assert compose_with("model.sample_dtype=bfloat16").model.sample_dtype == "bfloat16"  # a user's choice stands


@pytest.mark.parametrize("group, option", [o for o in OPTIONS if o[0] not in ("experiment", "hparams_search")])
def test_every_group_option_composes(group, option):
    cfg = compose_with(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=False)  # structure is valid YAML/OmegaConf
    assert cfg[group] is not None or option in ("none", "null")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes(experiment):
    cfg = compose_with(f"experiment={experiment}")
    assert cfg.task is not None and cfg.name != "default", "a preset names its run folder"


@pytest.mark.parametrize("option", [o for g, o in OPTIONS if g == "hparams_search"])
def test_every_search_preset_composes(option):
    compose_with(f"hparams_search={option}")


@pytest.mark.parametrize("group", ["sampler", "selector"])
def test_cheap_groups_instantiate_from_every_option(group):
    for g, option in OPTIONS:
        if g == group:
            assert instantiate(compose_with(f"{group}={option}")[group]) is not None


def test_sampler_generation_kwargs_come_from_the_command_line_and_are_checked():
    """Empty by default (the pure distribution), for the run's sampler and the evaluator's; a key given on the
    command line reaches the run's Sampler, nested lists included, with or without OmegaConf's containers."""
    from raft.sampling.sampler import Sampler

    cfg = compose_with()
    assert (
        instantiate(cfg.sampler).generation_kwargs == {} and instantiate(cfg.evaluator.sampler).generation_kwargs == {}
    )
    cfg = compose_with(
        "+sampler.generation_kwargs.repetition_penalty=1.1", "+sampler.generation_kwargs.bad_words_ids=[[5,6]]"
    )
    for sampler in (instantiate(cfg.sampler), instantiate(cfg.sampler, _convert_="all")):
        assert isinstance(sampler, Sampler)
        assert sampler.generation_kwargs.plain() == {"repetition_penalty": 1.1, "bad_words_ids": [[5, 6]]}


def run_raft(*args, timeout=120):
    # from the repository root, as a user runs it
    return subprocess.run(
        [sys.executable, "-m", "raft", *args], capture_output=True, text=True, timeout=timeout, cwd=CONF.parent.parent
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler.K=0", "sampler.K must be >= 1, got 0"),
        ("sampler.temperature=0", "sampler.temperature (lambda) must be > 0"),
        ("+sampler.generation_kwargs.presence_penalty=0.5", "sampler.generation_kwargs.presence_penalty is not a"),
        ("selector=global selector.acceptance_ratio=1.5", "selector.acceptance_ratio must be in (0, 1]"),
        ("selector.beta=-0.1", "selector.beta must be >= 0"),
        ("task.torch_threads=0", "task.torch_threads must be >= 1"),
        ("task.heap_mmap_threshold_mb=-1", "task.heap_mmap_threshold_mb must be > 0 or null"),
        ("model.name_or_path=no-such-model", "model.name_or_path='no-such-model' is neither"),
        ("data=hh_rlhf data.path=/nonexistent/pairs.jsonl", "data.path='/nonexistent/pairs.jsonl' does not exist"),
    ],
)
def test_bad_input_gives_one_line_naming_the_field(override, message, tmp_path):
    result = run_raft(*override.split(), f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"raft: error: {lines[0].removeprefix('raft: error: ')}"] and message in lines[0]
    assert not list(tmp_path.glob("iter_*"))  # nothing ran


WRONG_TYPES = [  # typed by raft/cli/schemas.py; before, a run failed with "'<' not supported between ... str and int"
    ("sampler.K=four", "sampler.K"),
    ("sampler=paper sampler.temperature=hot", "sampler.temperature"),
    ("sampler=diffusion sampler.steps=many", "sampler.steps"),
    ("selector.beta=abc", "selector.beta"),
    ("selector=global selector.acceptance_ratio=half", "selector.acceptance_ratio"),
    ("selector=threshold selector.mixed_prompts_only=maybe", "selector.mixed_prompts_only"),
    ("task.iterations=many", "task.iterations"),
    ("task.batch_size=x", "task.batch_size"),
    ("task=grpo task.torch_threads=all", "task.torch_threads"),
    ("task=ppo task.batch_size=x", "task.batch_size"),
    ("task=diffusion_raft task.eval_sampler.K=x", "task.eval_sampler.K"),
    ("task=pipeline task.stages.raft.iterations=many", "task.stages.raft.iterations"),
]


@pytest.mark.parametrize("override, key", WRONG_TYPES)
def test_a_value_of_the_wrong_type_is_named_when_the_config_composes(override, key):
    with pytest.raises(ConfigCompositionException) as error:
        compose_with(*override.split())
    assert f"full_key: {key}\n" in str(error.value.__cause__)


@pytest.mark.parametrize("override, flags", [("sampler.K=four", ["--cfg", "job"]), ("task.iterations=many", [])])
def test_a_value_of_the_wrong_type_on_the_command_line_names_the_key(override, flags, tmp_path):
    result = run_raft(override, f"hydra.run.dir={tmp_path}", *flags)
    key = override.partition("=")[0]
    assert result.returncode != 0 and f"full_key: {key}\n" in result.stderr, result.stderr[-2000:]
    assert not list(tmp_path.iterdir())  # nothing ran


def test_schemas_type_the_presets_and_keep_interpolations():
    """The presets compose through the schemas: a sweep's `${row.K}` stays an interpolation in a typed field, and
    the run settings every iterative task shares come from one schema."""
    cfg = compose_with("experiment=paper/mini/table5_temperature")
    assert OmegaConf.to_container(cfg.sampler)["K"] == "${row.K}" and cfg.sampler.K == 8
    assert OmegaConf.get_type(cfg.sampler).__name__ == "LMSamplerSchema"
    for task in ("raft", "grpo", "reinforce_rej", "ppo", "diffusion_raft"):
        run = compose_with(f"task={task}").task
        assert (run.iterations, run.keep_checkpoints, run.torch_threads) == (4, 1, None), task
        assert OmegaConf.to_container(run)["seed"] == "${seed}", task


def test_rows_without_rejected_are_named(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello"}\n')
    result = run_raft("task=sft", "data=hh_rlhf", f"data.path={bad}", "model=tiny", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode != 0
    assert "row 1 has no 'rejected'" in result.stderr or "row 0 has no 'rejected'" in result.stderr


def test_help_and_cfg_job_work():
    assert "raft" in run_raft("--help").stdout
    shown = run_raft("--cfg", "job", "sampler.K=8")
    assert shown.returncode == 0 and "K: 8" in shown.stdout


def test_objective_picks_a_float_from_the_task_result():
    from raft.cli.main import objective

    result = {"after": {"reward": 0.25}, "before": {}}
    assert objective(result, None) is result
    assert objective(result, "after.reward") == 0.25
    with pytest.raises(KeyError, match="objective='after.ppl'"):
        objective(result, "after.ppl")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_gives_its_module_only_arguments_it_takes(experiment):
    """A preset's settings for one Lightning module must not leak into another (e.g. SFT's scheduler into PPO)."""
    import importlib
    import inspect

    module = compose_with(f"experiment={experiment}").module
    path, _, name = module._target_.rpartition(".")
    accepted = inspect.signature(getattr(importlib.import_module(path), name)).parameters
    unknown = [k for k in module if not k.startswith("_") and k not in accepted]
    assert not unknown, f"{module._target_} takes no {unknown}"


METHOD_SWAPS = ["task=grpo", "task=reinforce_rej", "module=raftpp selector=threshold", "selector=all"]


@pytest.mark.parametrize("swap", METHOD_SWAPS)
@pytest.mark.parametrize("experiment", ["arithmetic_raft", "arithmetic_methods", "hh_rlhf_mini"])
def test_a_method_swapped_into_a_preset_builds_its_selector_and_module(experiment, swap):
    """A preset's selector or module settings must not break the methods its comments offer on top of it (the
    arithmetic preset's `selector.beta` once stopped `task=grpo`: KeepAll takes no beta)."""
    import importlib

    if experiment == "hh_rlhf_mini" and swap.startswith("task="):
        # a pipeline preset: task=grpo replaces the pipeline, and its stages are no key of the typed RAFT task (a run
        # stopped at Runner's unexpected keyword before the task was typed; now the composition names the key)
        with pytest.raises(ConfigCompositionException) as error:
            compose_with(f"experiment={experiment}", *swap.split())
        assert "full_key: task.stages" in str(error.value)
        return
    cfg = compose_with(f"experiment={experiment}", *swap.split())
    instantiate(cfg.selector)
    path, _, name = cfg.module._target_.rpartition(".")
    accepted = {p for c in getattr(importlib.import_module(path), name).__mro__ for p in _init_parameters(c)}
    assert not [k for k in cfg.module if not k.startswith("_") and k not in accepted]


def _init_parameters(cls) -> list[str]:
    """The named parameters of a class's own __init__ (its **kwargs go up the MRO, which the caller walks)."""
    import inspect

    init = cls.__dict__.get("__init__")
    return list(inspect.signature(init).parameters) if init is not None else []
