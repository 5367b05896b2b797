"""sampler.engine=vllm: a vLLM engine in its own process gives raft's samples, follows the fine-tuned weights,
and repeats a stage's draws from the stage's seed. The engine tests need its interpreter (scripts/make_vllm_env.sh
builds the CPU one); they skip, saying so, where it does not exist."""

import inspect
import json
import subprocess
import sys
import types
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from raft.policies.causal_lm import CausalLMPolicy
from raft.sampling.engines.vllm_engine import VLLMEngine, default_python
from raft.sampling.engines.vllm_server import NEUTRAL, Server, engine_kwargs, sampling_kwargs
from raft.sampling.sampler import Sampler
from raft.sampling.samples import read_samples

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


# -- the request's sampling settings, built without vLLM ------------------------------------------------------------

PURE = dict(
    n=4,
    temperature=0.7,
    top_p=0.9,
    max_tokens=12,
    stop_token_ids=[2, 7],
    stop=None,
    seed=5,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    repetition_penalty=1.0,
    min_p=0.0,
    min_tokens=0,
)


def request_kwargs(**overrides):
    settings = dict(n=4, temperature=0.7, top_k=0, top_p=0.9, max_tokens=12, stop_token_ids=(2, 7), stop=(), seed=5)
    return sampling_kwargs(**{**settings, **overrides})


def test_engine_requests_spell_out_the_pure_distribution():
    """p^(1/lambda) with top-k / top-p and vLLM's neutral value for everything else: a request never leaves a
    sampling setting to defaults (vLLM's, or the model's generation_config.json)."""
    assert request_kwargs() == {**PURE, "top_k": -1}  # top_k=0: no top-k
    assert request_kwargs(top_k=8, stop=["\n\nHuman:"]) == {**PURE, "top_k": 8, "stop": ["\n\nHuman:"]}
    assert set(PURE) - {"n", "temperature", "top_p", "max_tokens", "stop_token_ids", "stop", "seed"} == set(NEUTRAL)
    # the engine reads no sampling defaults from the model, nor a max_tokens cap
    started = engine_kwargs("m", "float32", 0, None, 0.5, True, max_lora_rank=0, sleep_mode=False)
    assert started["generation_config"] == "vllm"


def test_generation_kwargs_pass_to_vllm_by_name():
    asked = {"repetition_penalty": 1.1, "presence_penalty": 0.5, "min_new_tokens": 2, "logit_bias": {"17": -100}}
    expected = {"repetition_penalty": 1.1, "presence_penalty": 0.5, "min_tokens": 2, "logit_bias": {17: -100}}
    assert request_kwargs(generation_kwargs=asked) == {**PURE, "top_k": -1, **expected}
    for key in ("no_repeat_ngram_size", "typical_p", "ignore_eos", "logprobs"):
        with pytest.raises(ValueError, match=f"sampler.generation_kwargs.{key} is not a vLLM sampling setting"):
            request_kwargs(generation_kwargs={key: 1})
    with pytest.raises(ValueError, match="sampler.generation_kwargs sets min_tokens twice"):
        request_kwargs(generation_kwargs={"min_tokens": 1, "min_new_tokens": 2})
    # refused when the config is read, before any engine starts
    with pytest.raises(ValueError, match="sampler.generation_kwargs.no_repeat_ngram_size is not a vLLM"):
        Sampler(engine="vllm", generation_kwargs={"no_repeat_ngram_size": 2})
    with pytest.raises(ValueError, match="sampler.generation_kwargs.temperature is raft's own setting"):
        Sampler(engine="vllm", generation_kwargs={"temperature": 0.5})
    assert Sampler(engine="vllm", generation_kwargs={"presence_penalty": 0.5}).generation_kwargs == {
        "presence_penalty": 0.5
    }


class FakeLLM:
    """What Server.generate calls on vLLM's LLM, answering each prompt with its own ids."""

    def __init__(self):
        self.calls = []

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def collective_rpc(self, fn, args=()):
        self.calls.append(("collective_rpc", fn.__name__, args))

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        self.calls.append("generate")
        done = types.SimpleNamespace(index=0, finish_reason="length", stop_reason=None)
        return [
            types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=p["prompt_token_ids"], **vars(done))])
            for p in prompts
        ]


def test_raft_asks_the_server_for_the_samplers_settings_and_the_server_builds_them(monkeypatch):
    """raft's request carries the sampler's settings and generation_kwargs; the server (run with a stand-in for
    vLLM) turns them into SamplingParams through sampling_kwargs, seeded per prompt or through torch."""
    engine = VLLMEngine()
    sent = {}
    monkeypatch.setattr(engine, "request", lambda op, **fields: sent.update(op=op, **fields) or {"outputs": []})
    sampler = Sampler(
        K=3,
        temperature=0.8,
        top_k=5,
        top_p=0.95,
        max_new_tokens=9,
        stop=["\n\nHuman:"],
        engine="vllm",
        generation_kwargs={"repetition_penalty": 1.2, "min_new_tokens": 1},
    )
    engine.generate([[1, 2], [3]], sampler, stop_ids=[2], seed=11)
    fields = {k: v for k, v in sent.items() if k != "op"}
    assert sent["op"] == "generate" and fields["generation_kwargs"] == {"repetition_penalty": 1.2, "min_tokens": 1}
    fields = json.loads(json.dumps(fields))  # as the server reads it
    inspect.signature(Server.generate).bind(None, **fields)  # every field is one the server takes

    built = []
    fake_vllm = types.ModuleType("vllm")
    fake_vllm.SamplingParams = lambda **kwargs: built.append(kwargs) or kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    for per_request_seeds in (True, False):
        server, built[:] = Server(), []
        server.llm, server.per_request_seeds = FakeLLM(), per_request_seeds
        answer = server.generate(**fields)
        assert [[c["ids"] for c in row] for row in answer["outputs"]] == [[[1, 2]], [[3]]]
        pure = dict(n=3, temperature=0.8, top_k=5, top_p=0.95, max_tokens=9, stop_token_ids=[2], stop=["\n\nHuman:"])
        seeds = [11, 12] if per_request_seeds else [None, None]
        assert built == [{**NEUTRAL, **pure, "repetition_penalty": 1.2, "min_tokens": 1, "seed": s} for s in seeds]
        assert server.llm.calls[-1] == "generate"
        assert (("collective_rpc", "_reseed", (11,)) in server.llm.calls) is not per_request_seeds


@pytest.fixture(scope="module")
def peaked_lm_folder(tmp_path_factory):
    """A tiny Llama the CPU engine runs (head size 32), its final norm scaled so that every next token has a
    clear argmax: greedy outputs of two implementations then agree exactly instead of parting at near-ties."""
    from safetensors.torch import load_file, save_file

    from raft.policies.models import build_tiny_causal_lm

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
    from raft.sampling.samples import Sample

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
    from raft.sampling.samples import Sample

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


@pytest.mark.slow
@needs_engine
def test_engine_ignores_the_models_suggested_settings(peaked_lm_folder, tmp_path):
    """A generation_config.json that suggests a penalty, an n-gram ban, min-p, another temperature and top-k and a
    2-token cap changes nothing: the engine draws what it draws from the same model without them (same seed)."""
    import shutil

    suggesting = tmp_path / "suggesting"
    shutil.copytree(peaked_lm_folder, suggesting)
    config = json.loads((suggesting / "generation_config.json").read_text())
    suggested = dict(repetition_penalty=1.8, no_repeat_ngram_size=2, min_p=0.2, temperature=0.3, top_k=3)
    (suggesting / "generation_config.json").write_text(json.dumps({**config, **suggested, "max_new_tokens": 2}))
    sampler = Sampler(K=3, max_new_tokens=10, engine="vllm")
    drawn = []
    for folder in (peaked_lm_folder, suggesting):
        policy = CausalLMPolicy(str(folder), sample_dtype="float32", vllm=VLLMEngine(kv_cache_gb=1))
        try:
            torch.manual_seed(7)
            drawn.append([s.response_ids for s in policy.sample(None, PROMPTS, sampler, Path("."))])
        finally:
            policy.vllm.close()
    assert drawn[1] == drawn[0]
    assert max(len(ids) for ids in drawn[1]) > 2  # no cap from the model's max_new_tokens
