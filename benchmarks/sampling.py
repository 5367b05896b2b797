"""One RAFT stage's sampling with each engine, on the same prompts: tokens/s, engine start and weight-update
seconds, peak memory.

    python benchmarks/sampling.py                       # 32 HH prompts x K = 8, 64 new tokens, SmolLM2-135M, bf16
    python benchmarks/sampling.py --engines vllm --prompts 64 --K 16 --kv-cache-gb 1

Each engine samples the stage twice from the same seed (the second run is the steady state: vLLM's engine is
warm). The vLLM engine then takes a stage checkpoint's weights in place (a full model folder written by
`save_pretrained`) and samples once more from it. Peak memory is the resident peak (VmHWM) of the process that
samples: raft's for `hf`, the engine's for `vllm` (its KV cache is reserved up front: --kv-cache-gb).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from raft.data.sources import PreferencePairs  # noqa: E402
from raft.infra.resources import reset_peak_memory  # noqa: E402
from raft.policies.causal_lm import CausalLMPolicy  # noqa: E402
from raft.sampling.engines.vllm_engine import VLLMEngine  # noqa: E402
from raft.sampling.sampler import Sampler  # noqa: E402

HH = Path(__file__).resolve().parent.parent / "raft" / "assets" / "hh_rlhf" / "harmless-base.jsonl.gz"


def vm_hwm_gb(pid: str | int = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def timed_stage(policy, checkpoint, prompts, sampler, seed: int) -> tuple[float, int]:
    torch.manual_seed(seed)  # as seed_stage does: the same draws on every run
    began = time.monotonic()
    samples = policy.sample(checkpoint, prompts, sampler, Path("."))
    return time.monotonic() - began, sum(len(s.response_ids) for s in samples)


def bench(engine: str, args) -> dict:
    vllm = VLLMEngine(python=args.engine_python, kv_cache_gb=args.kv_cache_gb, while_training="keep")
    policy = CausalLMPolicy(args.model, chat_template=False, sample_dtype=args.dtype, vllm=vllm)
    pairs = PreferencePairs(str(HH), max_prompt_chars=600)
    prompts = list(enumerate(pairs.prompts("train")[: args.prompts]))
    sampler = Sampler(
        K=args.K, max_new_tokens=args.max_new_tokens, batch_size=args.K * 8, stop=["\n\nHuman:"], engine=engine
    )
    reset_peak_memory()
    result: dict = {"engine": engine}
    runs = []
    for _ in range(2):
        seconds, tokens = timed_stage(policy, None, prompts, sampler, args.seed)
        runs.append({"seconds": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)})
    result["runs"] = runs
    if engine == "vllm":
        result["engine_start_s"] = round(vllm.start_s, 1)
        with tempfile.TemporaryDirectory() as folder:  # a stage checkpoint: the model as finetune saves it
            model, tokenizer = policy.load(None, "float32")
            with torch.no_grad():
                model.lm_head.weight.mul_(1.001)  # other weights, so that the engine cannot skip the load
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            del model
            seconds, tokens = timed_stage(policy, Path(folder), prompts, sampler, args.seed)
        result["weight_update_s"] = round(vllm.load_s, 2)
        result["after_update"] = {"seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}
        result["peak_gb"] = round(vm_hwm_gb(vllm._process.pid), 2)
        vllm.close()
    else:
        result["peak_gb"] = round(vm_hwm_gb(), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--K", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-cache-gb", type=int, default=1)
    parser.add_argument("--engine-python", default=None, help="the engine's interpreter (default: as model.vllm)")
    args = parser.parse_args()
    results = []
    for engine in args.engines:  # one after the other: never two engines in memory at once
        results.append(bench(engine, args))
        print(json.dumps(results[-1]), flush=True)
    print(f"\n{'engine':8} {'steady s':>9} {'tok/s':>8} {'start s':>8} {'update s':>9} {'peak GB':>8}")
    for r in results:
        steady = r["runs"][-1]
        print(
            f"{r['engine']:8} {steady['seconds']:9.1f} {steady['tokens_per_s']:8.1f} "
            f"{r.get('engine_start_s', 0):8.1f} {r.get('weight_update_s', 0):9.2f} {r['peak_gb']:8.2f}"
        )


if __name__ == "__main__":
    main()
