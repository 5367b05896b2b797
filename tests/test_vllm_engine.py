"""sampler.engine=vllm: a vLLM engine in its own process gives raft's samples, follows the fine-tuned weights,
and repeats a stage's draws from the stage's seed. The engine tests need its interpreter (scripts/make_vllm_env.sh
builds the CPU one); they skip, saying so, where it does not exist."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from raft.engines.vllm_engine import VLLMEngine, default_python
from raft.policies.causal_lm import CausalLMPolicy
from raft.samples import read_samples
from raft.sampling import Sampler

ROOT = Path(__file__).resolve().parent.parent
ENGINE_PYTHON = default_python()
needs_engine = pytest.mark.skipif(
    ENGINE_PYTHON == sys.executable
    and subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True).returncode != 0,
    reason="no vLLM engine interpreter: run scripts/make_vllm_env.sh (or set RAFT_VLLM_PYTHON)",
)


def test_engine_settings_are_checked():
    with pytest.raises(ValueError, match="model.vllm.kv_cache_gb"):
        VLLMEngine(kv_cache_gb=0)
    with pytest.raises(ValueError, match="model.vllm.gpu_memory_utilization"):
        VLLMEngine(gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="model.vllm.while_training"):
        VLLMEngine(while_training="nap")
    with pytest.raises(ValueError, match="sampler.engine"):
        Sampler(engine="sglang")


def test_a_missing_engine_interpreter_is_named(tmp_path):
    engine = VLLMEngine(python=str(tmp_path / "no-env" / "bin" / "python"))
    with pytest.raises(ValueError, match="model.vllm.python"):
        engine.ensure_started(str(tmp_path), "float32", seed=0)


@pytest.fixture(scope="module")
def peaked_lm_folder(tmp_path_factory):
    """A tiny Llama the CPU engine runs (head size 32), its final norm scaled so that every next token has a
    clear argmax: greedy outputs of two implementations then agree exactly instead of parting at near-ties."""
    from safetensors.torch import load_file, save_file

    from raft.models import build_tiny_causal_lm

    folder = build_tiny_causal_lm(tmp_path_factory.mktemp("engine_llama"), hidden_size=128)
    weights = load_file(folder / "model.safetensors")
    weights["model.norm.weight"] *= 30
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


PROMPTS = [(0, "How can I cook rice?"), (1, "Please write a short note"), (2, "I love this")]
GREEDY = dict(K=1, temperature=1e-6, max_new_tokens=12)


def hf_greedy(policy, checkpoint):
    return [s.response_ids for s in policy.sample(checkpoint, PROMPTS, Sampler(**GREEDY), Path("."))]


def engine_greedy(policy, checkpoint):
    return [s.response_ids for s in policy.sample(checkpoint, PROMPTS, Sampler(**GREEDY, engine="vllm"), Path("."))]


@pytest.fixture(scope="module")
def policy(peaked_lm_folder):
    policy = CausalLMPolicy(str(peaked_lm_folder), sample_dtype="float32", vllm=VLLMEngine(kv_cache_gb=1))
    yield policy
    policy.vllm.close()


@pytest.mark.slow
@needs_engine
def test_engine_samples_have_raft_form_and_repeat_with_the_seed(policy):
    sampler = Sampler(K=3, max_new_tokens=10, engine="vllm", stop=["e"])
    torch.manual_seed(7)
    first = policy.sample(None, PROMPTS, sampler, Path("."))
    torch.manual_seed(7)
    again = policy.sample(None, PROMPTS, sampler, Path("."))
    hf = policy.sample(None, PROMPTS, Sampler(K=3, max_new_tokens=10, stop=["e"]), Path("."))
    assert [asdict(s) for s in first] == [asdict(s) for s in again]  # the same seed, the same draws
    assert [(s.prompt_idx, s.sample_idx, s.prompt_ids) for s in first] == [
        (s.prompt_idx, s.sample_idx, s.prompt_ids) for s in hf
    ]
    assert set(asdict(first[0])) == set(asdict(hf[0]))
    _, tokenizer = policy.load(None)
    for s in first:
        assert 1 <= len(s.response_ids) <= 10 and s.finish_reason in ("stop", "length")
        if s.stop_reason == "e":  # cut before the string; the string's tokens end the ids
            assert "e" not in s.response and "e" in tokenizer.decode(s.response_ids)
        elif s.finish_reason == "length":
            assert len(s.response_ids) == 10 and s.response == tokenizer.decode(s.response_ids)


@pytest.mark.slow
@needs_engine
def test_engine_weights_follow_the_fine_tuned_policy(policy, tmp_path, quiet_trainer):
    from raft.modules.sft import SFTModule
    from raft.samples import Sample

    assert engine_greedy(policy, None) == hf_greedy(policy, None)
    # fine-tune towards one response until the greedy output changes
    target = [Sample(prompt_idx=i, prompt=p, response=" rice with a lid and simmer", sample_idx=0) for i, p in PROMPTS]
    module = lambda **kw: SFTModule(lr=3e-2, batch_size=3, **kw)  # noqa: E731
    policy.finetune(None, target * 4, tmp_path / "ckpt", module, quiet_trainer(max_epochs=5))
    tuned = hf_greedy(policy, tmp_path / "ckpt")
    assert tuned != hf_greedy(policy, None)
    assert engine_greedy(policy, tmp_path / "ckpt") == tuned  # weights loaded in place, no restart
    assert engine_greedy(policy, None) == hf_greedy(policy, None)  # and back


@pytest.mark.slow
@needs_engine
def test_two_raft_iterations_on_the_engine_resume_with_the_same_samples(peaked_lm_folder, tmp_path):
    command = [
        sys.executable,
        "-m",
        "raft",
        "model=tiny",
        f"model.name_or_path={peaked_lm_folder}",
        "model.vllm.kv_cache_gb=1",
        "sampler.engine=vllm",
        "task.iterations=2",
        "task.batch_size=4",
        "task.keep_checkpoints=0",
        "sampler.K=2",
        "sampler.max_new_tokens=6",
        "evaluator.n_prompts=4",
        "evaluator.cache_dir=null",
        "trainer.max_epochs=1",
        "trainer.precision=32",
        f"hydra.run.dir={tmp_path}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, timeout=900)
    stage = tmp_path / "iter_001"
    first = [asdict(s) for s in read_samples(stage / "samples.jsonl")]
    assert len(first) == 4 * 2 and all(s["response_ids"] for s in first)
    # a run killed after iteration 0: the restarted engine draws iteration 1's samples again
    for name in ("samples.jsonl", "scored.jsonl", "selected.jsonl", "kl_samples.jsonl", "metrics.json"):
        (stage / name).unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(stage / "checkpoint"), str(tmp_path / "evaluation.json")], check=True)
    subprocess.run(command, cwd=ROOT, check=True, timeout=900)
    assert [asdict(s) for s in read_samples(stage / "samples.jsonl")] == first
    assert json.loads((stage / "metrics.json").read_text())["iteration"] == 1


@pytest.mark.slow
@needs_engine
def test_engine_serves_a_lora_checkpoint_per_request(peaked_lm_folder, tmp_path, quiet_trainer):
    from raft.modules.sft import SFTModule
    from raft.samples import Sample

    policy = CausalLMPolicy(
        str(peaked_lm_folder), sample_dtype="float32", lora={"r": 8, "alpha": 16}, vllm=VLLMEngine(kv_cache_gb=1)
    )
    target = [Sample(prompt_idx=i, prompt=p, response=" rice with a lid and simmer", sample_idx=0) for i, p in PROMPTS]
    module = lambda **kw: SFTModule(lr=5e-2, batch_size=3, **kw)  # noqa: E731
    policy.finetune(None, target * 4, tmp_path / "adapter", module, quiet_trainer(max_epochs=5))
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    tuned = hf_greedy(policy, tmp_path / "adapter")
    assert tuned != hf_greedy(policy, None)
    try:
        assert engine_greedy(policy, tmp_path / "adapter") == tuned
        assert engine_greedy(policy, None) == hf_greedy(policy, None)  # the base, without the adapter
    finally:
        policy.vllm.close()
