"""The paper presets (conf/experiment/paper/**): paper-scale settings, sweep grids over seeds, CPU twins.

No model runs here: presets are composed with Hydra's compose API, sweeps are expanded with Hydra's own
basic sweeper (the code `raft -m` runs), and only the cheap parts of the mini twins are instantiated.
"""

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

import raft.cli.resolvers  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "raft" / "conf"
PAPER = CONF / "experiment" / "paper"
OTHER_PAPERS = {
    "gsm8k_qwen"
}  # the RAFT follow-up's GSM8K setting: no HH-RLHF base, no mini twin (tests/test_verifiable.py)
PAPER_PRESETS = sorted(p.stem for p in PAPER.glob("*.yaml") if p.stem not in OTHER_PAPERS)
MINI_PRESETS = sorted(p.stem for p in (PAPER / "mini").glob("*.yaml"))
DIFFUSION = {"table8_resolution_adaptation", "figure6_alignment"}
SHARED = {"setup", "raft", "evaluate_base", "table3_rows"}  # building blocks and runs without a seed sweep
LLM_PAPER = [p for p in PAPER_PRESETS if p not in DIFFUSION]

# Each table/figure preset's grid without the seeds: {override key: values}, as the paper states it.
GRIDS = {
    "table3_main": {},
    "table3_ppo": {},
    "table4_k": {"sampler.K": [8, 16, 32]},
    "table5_temperature": {
        "row": [
            {"K": 8, "temperature": 0.7},
            {"K": 8, "temperature": 0.85},
            {"K": 8, "temperature": 1.0},
            {"K": 32, "temperature": 1.0},
        ]
    },
    "table6_kl": {"selector.beta": [0, 0.005, 0.01, 0.1]},
    "table7_distillation": None,  # teacher vs self: names differ between paper and mini, checked below
    "figure1_learning_curve": {},
    "figure3_kl": {"selector.beta": [0, 0.005, 0.01, 0.1]},
    "global_ranking": {},
    "expert_prompting": {"source": ["expert", "self"]},
    "reward_hacking_filters": {"filters": ["hashtag_emoji", "none"]},
    "table8_resolution_adaptation": {},
    "figure6_alignment": {},
}


def compose_with(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(cfg, *command_line):
    """The jobs `raft -m` launches: the preset's hydra.sweeper.params plus command-line sweeps, expanded by
    Hydra's basic sweeper into one override list per job."""
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True) or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(command_line)
    overrides = OverridesParser.create().parse_overrides(arguments)
    batches = BasicSweeper.split_arguments(overrides, None)
    return [job for batch in batches for job in batch]


def parse_job(job):
    """{key: value} of one job's overrides, values parsed as Hydra parses them (ints, floats, dicts)."""
    parsed = OverridesParser.create().parse_overrides(job)
    return {o.key_or_group: o.value() for o in parsed}


@pytest.mark.parametrize("twin", ["", "mini/"])
def test_table3_rows_score_the_dataset_and_the_base_model_with_the_trained_reward_model(twin):
    cfg = compose_with(f"experiment=paper/{twin}table3_rows")
    jobs = [parse_job(job) for job in sweep_jobs(cfg)]
    assert [job["task.responses"] for job in jobs] == ["chosen", "rejected", "model"]
    assert cfg.task._target_ == "raft.tasks.evaluate.EvaluateTask"
    assert cfg.reward._target_ == "raft.rewards.reward_model.TrainedRewardModel"
    assert cfg.reward.path == cfg.paper.reward_model  # the reward model table3_main trains


def test_every_paper_preset_has_a_mini_twin():
    assert PAPER_PRESETS and set(PAPER_PRESETS) == set(MINI_PRESETS)
    assert {
        "table3_main",
        "table4_k",
        "table5_temperature",
        "table6_kl",
        "table7_distillation",
        "figure1_learning_curve",
        "figure3_kl",
        "global_ranking",
        "expert_prompting",
        "reward_hacking_filters",
        "table8_resolution_adaptation",
        "figure6_alignment",
    } <= set(PAPER_PRESETS)


@pytest.mark.parametrize("preset", [f"paper/{p}" for p in PAPER_PRESETS] + [f"paper/mini/{p}" for p in MINI_PRESETS])
def test_preset_composes_and_names_its_folder(preset):
    cfg = compose_with(f"experiment={preset}")
    expected = "paper_" + preset.removeprefix("paper/").replace("/", "_").replace("figure3_kl", "table6_kl")
    assert cfg.name == expected, "run folders: outputs/multirun/<name>"
    assert cfg.seeds == 3
    assert "seeds" in cfg.hydra.job.config.override_dirname.exclude_keys, "seeds=2 then 3 reuses the folders"


@pytest.mark.parametrize("preset", LLM_PAPER)
def test_paper_scale_settings(preset):
    """Section 4 and Table 12: LLaMA-7B, Open-LLaMA-3B reward model, full-hh-rlhf, 128 new tokens, lr 2e-5,
    linear decay, 2 epochs, bf16 on GPU, and the test setting for evaluation."""
    cfg = compose_with(f"experiment=paper/{preset}")
    student = "EleutherAI/gpt-neo-2.7B" if preset == "table7_distillation" else "huggyllama/llama-7b"
    if preset in ("table3_ppo",):
        assert cfg.model.name_or_path == "outputs/paper/llama-7b-sft/checkpoint"  # PPO starts from LLaMA-7B-SFT
    else:
        assert cfg.model.name_or_path == student
    assert cfg.model.chat_template is False
    assert cfg.data.path == "Dahoas/full-hh-rlhf" and cfg.data.max_test == 4608
    assert (cfg.data.test_path, cfg.data.test_hub_split) == ("Dahoas/full-hh-rlhf", "test")
    assert cfg.sampler.max_new_tokens == 128
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.max_epochs == 2
    ev = cfg.evaluator.sampler
    assert (ev.K, ev.temperature, ev.top_k, ev.max_new_tokens) == (1, 0.7, 40, 128)
    assert cfg.reward._target_ == "raft.rewards.reward_model.TrainedRewardModel"
    assert cfg.reward.path == "outputs/paper/open-llama-3b-rm"
    if preset == "table3_ppo":
        assert cfg.module._target_ == "raft.modules.ppo.PPOModule" and cfg.module.lr == 1e-5
        assert cfg.task.batch_size == 2048 and (cfg.sampler.K, cfg.sampler.temperature) == (1, 1.0)
        return
    assert cfg.module._target_ == "raft.modules.sft.SFTModule"
    assert cfg.module.lr == 2e-5 and cfg.module.scheduler == "linear"
    if preset == "table3_main":
        stages = cfg.task.stages
        assert stages.reward_model.backbone == "openlm-research/open_llama_3b"
        assert stages.reward_model.output_dir == cfg.reward.path
        assert stages.sft.trainer.max_epochs == 1 and stages.raft.batch_size == 2048
        assert stages.raft.init_checkpoint == stages.sft.output_dir + "/checkpoint"
        assert (cfg.sampler.K, cfg.sampler.temperature) == (32, 1.0)
    elif preset not in ("setup", "evaluate_base", "table3_rows"):
        assert cfg.task.batch_size == 2048
        expected_init = None if preset == "table7_distillation" else "outputs/paper/llama-7b-sft/checkpoint"
        assert cfg.task.init_checkpoint == expected_init


@pytest.mark.parametrize("twin", ["", "mini/"])
@pytest.mark.parametrize("preset", [p for p in GRIDS if GRIDS[p] is not None])
@pytest.mark.parametrize("seeds", [None, 2])
def test_sweep_expands_to_the_grid_times_seeds(twin, preset, seeds):
    extra = [] if seeds is None else [f"seeds={seeds}"]
    cfg = compose_with(f"experiment=paper/{twin}{preset}", *extra)
    jobs = [parse_job(job) for job in sweep_jobs(cfg)]
    grid = GRIDS[preset]
    expected = [
        dict(zip(list(grid) + ["seed"], values)) for values in itertools.product(*grid.values(), range(seeds or 3))
    ]
    assert sorted(map(repr, jobs)) == sorted(map(repr, expected))


@pytest.mark.parametrize("twin, teacher", [("", "llama7b_raft"), ("mini/", "teacher")])
def test_table7_sweeps_teacher_against_self(twin, teacher):
    cfg = compose_with(f"experiment=paper/{twin}table7_distillation")
    jobs = [parse_job(job) for job in sweep_jobs(cfg)]
    assert sorted(map(repr, jobs)) == sorted(
        repr({"source": s, "seed": i}) for s in (teacher, "self") for i in range(3)
    )
    for source in (teacher, "self"):
        task = compose_with(f"experiment=paper/{twin}table7_distillation", f"source={source}").task
        if source == "self":
            assert task.teacher is None
        elif twin:
            assert task.teacher._target_ == "raft.policies.causal_lm.CausalLMPolicy"
        else:  # the paper's teacher: the samples of Table 4's K = 32 run of the same seed, replayed
            assert task.teacher._target_ == "raft.policies.recorded.RecordedSamples"
            assert task.teacher.run_dir == "outputs/multirun/paper_table4_k/sampler.K=32,seed=0"
    assert (cfg.sampler.K, cfg.sampler.temperature) == (32, 0.85)
    replay = compose_with(
        f"experiment=paper/{twin}table7_distillation", "source=" + ("raft_run" if twin else "llama7b_raft"), "seed=2"
    ).task.teacher
    assert replay.run_dir.endswith("table4_k/sampler.K=32,seed=2")  # the teacher run of the same seed


def test_command_line_sweeps_add_to_the_preset_grid():
    cfg = compose_with("experiment=paper/table3_ppo")
    jobs = [parse_job(job) for job in sweep_jobs(cfg, "module.kl_coef=0.1,0.05")]
    assert len(jobs) == 6 and {j["module.kl_coef"] for j in jobs} == {0.1, 0.05}


def test_command_line_sweep_of_the_same_key_replaces_the_preset_list():
    """`raft -m experiment=paper/table6_kl selector.beta=0.005,0.01` runs only those betas (Hydra's basic
    sweeper keys its lists by override key, later ones win); `seed=0` runs one seed."""
    cfg = compose_with("experiment=paper/mini/table6_kl", "seeds=2")
    jobs = [parse_job(job) for job in sweep_jobs(cfg, "selector.beta=0.005,0.01", "seed=0")]
    assert sorted(j["selector.beta"] for j in jobs) == [0.005, 0.01] and {j["seed"] for j in jobs} == {0}


@pytest.mark.parametrize("twin", ["", "mini/"])
def test_every_table5_row_and_table6_beta_reach_the_parts(twin):
    for row in ({"K": 8, "temperature": 0.7}, {"K": 32, "temperature": 1.0}):
        cfg = compose_with(
            f"experiment=paper/{twin}table5_temperature", f"row={{K:{row['K']},temperature:{row['temperature']}}}"
        )
        assert (cfg.sampler.K, cfg.sampler.temperature) == (row["K"], row["temperature"])
    for beta in (0, 0.1):
        cfg = compose_with(f"experiment=paper/{twin}table6_kl", f"selector.beta={beta}")
        assert cfg.selector.beta == beta and (cfg.sampler.K, cfg.sampler.temperature) == (8, 1.0)
        assert instantiate(cfg.selector).needs_log_probs == (beta > 0)
    cfg = compose_with(f"experiment=paper/{twin}table4_k")
    assert cfg.sampler.temperature == 0.85


@pytest.mark.parametrize("twin", ["", "mini/"])
def test_appendix_variants(twin):
    cfg = compose_with(f"experiment=paper/{twin}global_ranking")
    assert cfg.selector._target_ == "raft.selection.selectors.GlobalRanking"
    assert cfg.sampler.K == 1 and cfg.selector.acceptance_ratio == 0.125
    cfg = compose_with(f"experiment=paper/{twin}reward_hacking_filters", "filters=hashtag_emoji")
    assert [f._target_ for f in cfg.filters] == [
        "raft.selection.filters.CharacterFilter",
        "raft.selection.filters.RegexFilter",
    ]
    cfg = compose_with(f"experiment=paper/{twin}expert_prompting")
    expert = cfg.task.teacher
    assert expert.chat_template is True and expert.system_prompt
    assert compose_with(f"experiment=paper/{twin}expert_prompting", "source=self").task.teacher is None
    cfg = compose_with(f"experiment=paper/{twin}figure1_learning_curve")
    assert cfg.evaluator.every == 1 and (cfg.sampler.K, cfg.sampler.temperature) == (8, 0.85)


def test_diffusion_presets_are_the_other_engineers_presets_over_seeds():
    for preset, base in (
        ("table8_resolution_adaptation", "sd_resolution_adaptation"),
        ("figure6_alignment", "sd_text_image_alignment"),
        ("mini/table8_resolution_adaptation", "digits_resolution"),
        ("mini/figure6_alignment", "digits_alignment"),
    ):
        ours, theirs = compose_with(f"experiment=paper/{preset}"), compose_with(f"experiment={base}")
        for part in ("model", "reward", "sampler", "data", "module"):
            assert ours[part] == theirs[part], (preset, part)
        assert ours.task.iterations == theirs.task.iterations


@pytest.mark.parametrize("preset", MINI_PRESETS)
def test_mini_twins_instantiate_their_cheap_parts(preset, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the HH-RLHF pairs are found relative to the repository root
    cfg = compose_with(f"experiment=paper/mini/{preset}")
    if preset in ("table8_resolution_adaptation", "figure6_alignment"):
        assert instantiate(cfg.sampler).K == 20
        return
    assert cfg.model.name_or_path in ("smollm2-135m-instruct", "outputs/paper_mini/smollm2-sft/checkpoint")
    assert cfg.sampler.max_new_tokens <= 48 and cfg.evaluator.n_prompts <= 32
    sampler = instantiate(cfg.sampler)
    assert sampler.K == cfg.sampler.K
    instantiate(cfg.selector)
    instantiate(cfg.evaluator.sampler)
    instantiate(cfg.filters)
    data = instantiate(cfg.data)
    prompts = data.prompts("train")
    assert len(prompts) > 100 and all(p.endswith("Assistant:") for p in prompts[:20])
    assert len(data.prompts("test")) == 32
    if preset in ("table3_main", "table3_ppo", "table3_rows", "evaluate_base", "setup"):
        return
    # the whole RAFT task builds (constructors validate; weights load lazily, on first use)
    cfg.task.output_dir = str(tmp_path)  # ${hydra:runtime.output_dir} exists only inside a Hydra run
    task = instantiate(cfg.task, _convert_="all")
    assert task.batch_size == (64 if preset == "global_ranking" else 8)  # global: b*K samples
    assert task.iterations >= 2


def test_mini_pipeline_points_raft_at_what_sft_and_reward_model_write():
    cfg = compose_with("experiment=paper/mini/table3_main")
    stages = cfg.task.stages
    assert stages.raft.init_checkpoint == stages.sft.output_dir + "/checkpoint"
    assert cfg.reward.path == stages.reward_model.output_dir and stages.reward_model.backbone == "minilm"
    ppo = compose_with("experiment=paper/mini/table3_ppo")
    assert ppo.model.name_or_path == stages.sft.output_dir + "/checkpoint"
    assert ppo.reward.path == cfg.reward.path and ppo.module._target_ == "raft.modules.ppo.PPOModule"


def test_optuna_search_space_and_objective():
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    cfg = compose_with("experiment=paper/mini/raft", "hparams_search=raft_optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.objective == "after.reward"
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    space = {o.key_or_group: create_optuna_distribution_from_override(o) for o in overrides}
    assert set(space) == {"sampler.K", "sampler.temperature", "selector.beta", "module.lr"}
    assert list(space["sampler.K"].choices) == [4, 8, 16, 32]
    lr = space["module.lr"]
    assert getattr(lr, "log", False) or type(lr).__name__ == "LogUniformDistribution"  # optuna 2 / 3
    assert space["sampler.temperature"].low == 0.7 and space["sampler.temperature"].high == 1.0


@pytest.mark.parametrize(
    "launcher, target",
    [
        ("local_pool", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_presets(launcher, target):
    cfg = compose_with("experiment=paper/mini/table4_k", f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_ == target
    if launcher == "slurm":
        assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.gpus_per_node == 1
    assert cfg.trainer.devices == 1  # one process per job: never DDP under -m


# Each CPU twin is its paper preset on the CPU base (override /experiment/paper: mini/raft or mini/setup) plus
# these keys, and nothing else: the table's body (K, lambda, beta, filters, evaluation cadence, sweep) is written
# once, in the paper preset. table7_distillation and the diffusion presets are written per scale (other models,
# other teachers, other base experiments); setup and raft are the bases themselves.
TWIN_KEYS = {
    "evaluate_base": set(),
    "table3_rows": {"reward"},
    "table3_main": {"reward", "task.stages.sft.max_examples", "task.stages.reward_model.backbone"}
    | {"task.stages.reward_model.module", "task.stages.raft.batch_size", "task.stages.raft.iterations"},
    "table3_ppo": {"reward", "module.minibatch_size", "task.batch_size", "task.iterations"},
    "table4_k": set(),
    "table5_temperature": set(),
    "table6_kl": {"task.iterations"},
    "figure3_kl": {"task.iterations"},  # mini/figure3_kl is mini/table6_kl's runs
    "figure1_learning_curve": {"task.iterations"},
    "global_ranking": {"task.batch_size"},
    "reward_hacking_filters": {"sampler.temperature"},
    "expert_prompting": {f"teachers.expert.{k}" for k in ("name_or_path", "system_prompt", "max_length")},
}
MINI_SETUP_BASED = {"evaluate_base", "table3_rows", "table3_main", "table3_ppo"}


def pop_dotted(container, dotted):
    *parents, last = dotted.split(".")
    for key in parents:
        container = container.get(key, {})
    return container.pop(last, "<absent>")


@pytest.mark.parametrize("preset", sorted(TWIN_KEYS))
def test_mini_twin_is_its_paper_preset_on_the_cpu_base(preset):
    base = "mini/setup" if preset in MINI_SETUP_BASED else "mini/raft"
    mini = compose_with(f"experiment=paper/mini/{preset}")
    paper = compose_with(f"experiment=paper/{preset}")
    assert mini.hydra.sweeper.params == paper.hydra.sweeper.params, "the sweep is the paper preset's"
    on_cpu_base = compose_with(f"experiment=paper/{preset}", f"experiment/paper={base}")
    ours, theirs = (OmegaConf.to_container(c, resolve=False) for c in (mini, on_cpu_base))
    for c in (ours, theirs):
        del c["hydra"], c["name"]
    for key in sorted(TWIN_KEYS[preset]):
        assert pop_dotted(ours, key) != pop_dotted(theirs, key), f"{key} is listed but not changed by the twin"
    assert ours == theirs, "the twin changes only its TWIN_KEYS"
