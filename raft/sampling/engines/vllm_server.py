"""A vLLM engine in its own process, spoken to in JSON lines: one request on stdin, one answer on stdout.

Run by path with the engine's own interpreter (`python vllm_server.py`); it imports vLLM and the standard
library only, never raft, so it works from a virtual environment that holds vLLM and nothing of raft's.
vLLM's own output goes to stderr; stdout carries the answers alone.

Requests (`op`):  start {model, dtype, seed, max_model_len, kv_cache_gb, gpu_memory_utilization, enforce_eager,
max_lora_rank}, generate {prompts: [[ids]], n, temperature, top_k, top_p, max_tokens, stop_token_ids, stop, seed,
lora, generation_kwargs}, load_weights {path}, sleep, wake, close. Answers: {"ok": true, ...} or {"ok": false,
"error": "..."}.

Samples come from p^(1/temperature) with the request's top-k / top-p and nothing else: the engine starts with
`generation_config="vllm"` (the model's generation_config.json neither sets default sampling parameters nor caps
max_tokens), and every request spells out vLLM's neutral values for the settings it does not ask for
(`sampling_kwargs`). `generation_kwargs` (raft's `sampler.generation_kwargs`) adds SamplingParams fields from
VLLM_KWARGS, and nothing else.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

OPS = ("start", "generate", "load_weights", "sleep", "wake")
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# SamplingParams fields that shape what is sampled, at the values that leave p^(1/temperature) as it is
NEUTRAL = {"presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0, "min_p": 0.0, "min_tokens": 0}
# what `sampler.generation_kwargs` may set on vLLM: SamplingParams' sampling fields raft does not set itself
VLLM_KWARGS = (*NEUTRAL, "logit_bias", "allowed_token_ids", "bad_words")
HF_NAMES = {"min_new_tokens": "min_tokens"}  # transformers' name for the same setting, so one config fits both


def vllm_kwargs(generation_kwargs) -> dict:
    """`sampler.generation_kwargs` as SamplingParams arguments; a key vLLM does not take here is refused."""
    out = {}
    for key, value in dict(generation_kwargs or {}).items():
        name = HF_NAMES.get(key, key)
        if name not in VLLM_KWARGS:
            raise ValueError(
                f"sampler.generation_kwargs.{key} is not a vLLM sampling setting raft passes on (sampler.engine=vllm"
                f" takes {', '.join(VLLM_KWARGS)}; min_new_tokens as min_tokens)"
            )
        if name in out:
            raise ValueError(f"sampler.generation_kwargs sets {name} twice ({key} and {name})")
        if name == "logit_bias" and isinstance(value, dict):
            value = {int(token): bias for token, bias in value.items()}  # JSON made the token ids strings
        out[name] = value
    return out


def sampling_kwargs(
    n, temperature, top_k, top_p, max_tokens, stop_token_ids, stop, seed, generation_kwargs=None
) -> dict:
    """One prompt's SamplingParams arguments: p^(1/temperature) with top-k (0 = off) and top-p, the neutral
    value of every other sampling setting, then `generation_kwargs` (checked by `vllm_kwargs`)."""
    return {
        **NEUTRAL,
        **vllm_kwargs(generation_kwargs),
        "n": n,
        "temperature": temperature,
        "top_k": top_k if top_k > 0 else -1,  # -1: off, in every vLLM version (newer ones also take 0)
        "top_p": top_p,
        "max_tokens": max_tokens,
        "stop_token_ids": list(stop_token_ids),
        "stop": list(stop) or None,
        "seed": seed,
    }


def engine_kwargs(
    model, dtype, seed, max_model_len, gpu_memory_utilization, enforce_eager, max_lora_rank, sleep_mode
) -> dict:
    """The LLM's arguments. generation_config="vllm": the model's generation_config.json sets no default
    sampling parameters and no max_tokens cap (its special token ids are still read)."""
    rank = next((r for r in LORA_RANKS if r >= max_lora_rank), max_lora_rank)  # vLLM takes these sizes
    lora = {"enable_lora": True, "max_lora_rank": rank} if max_lora_rank else {}
    return dict(
        model=model,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        enforce_eager=enforce_eager,
        enable_prefix_caching=True,  # the K samples of a prompt share its prefix
        enable_sleep_mode=sleep_mode,
        distributed_executor_backend="uni",
        generation_config="vllm",
        **lora,
    )


class Server:
    def __init__(self):
        self.llm, self.per_request_seeds, self.loras = None, False, {}

    def start(
        self, model, dtype, seed, max_model_len, kv_cache_gb, gpu_memory_utilization, enforce_eager, max_lora_rank
    ):
        began = time.monotonic()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))  # GiB; the CPU build's KV-cache size
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # one process: its RNG is reachable below
        from vllm import LLM
        from vllm.platforms import current_platform

        self.cpu = current_platform.is_cpu()
        self.per_request_seeds = not self.cpu  # the CPU build rejects per-request seeds
        if self.cpu:
            _keep_cpu_weights()
        self.llm = LLM(
            **engine_kwargs(
                model, dtype, seed, max_model_len, gpu_memory_utilization, enforce_eager, max_lora_rank, not self.cpu
            )
        )
        return {"start_s": time.monotonic() - began, "per_request_seeds": self.per_request_seeds}

    def generate(
        self,
        prompts,
        n,
        temperature,
        top_k,
        top_p,
        max_tokens,
        stop_token_ids,
        stop,
        seed,
        lora=None,
        generation_kwargs=None,
    ):
        from vllm import SamplingParams

        settings = dict(n=n, temperature=temperature, top_k=top_k, top_p=top_p, max_tokens=max_tokens)
        settings.update(stop_token_ids=stop_token_ids, stop=stop, generation_kwargs=generation_kwargs)
        params = [  # built first: a bad setting fails before the engine's RNG moves
            SamplingParams(**sampling_kwargs(**settings, seed=seed + i if self.per_request_seeds else None))
            for i in range(len(prompts))
        ]
        self.llm.reset_prefix_cache()  # the same schedule, hence the same draws, whatever ran before
        if not self.per_request_seeds:
            self.llm.collective_rpc(_reseed, args=(seed,))  # the CPU sampler draws from torch's default generator
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts],
            params,
            lora_request=self.lora_request(lora),
            use_tqdm=False,
        )
        return {
            "outputs": [
                [
                    {"ids": list(c.token_ids), "finish_reason": c.finish_reason, "stop_reason": c.stop_reason}
                    for c in sorted(o.outputs, key=lambda c: c.index)
                ]
                for o in outputs
            ]
        }

    def lora_request(self, path):
        if path is None:
            return None
        from vllm.lora.request import LoRARequest

        key = (path, os.stat(path).st_mtime_ns)  # a folder rewritten in place is a new adapter
        if key not in self.loras:
            self.loras[key] = LoRARequest(f"adapter{len(self.loras) + 1}", len(self.loras) + 1, path)
        return self.loras[key]

    def load_weights(self, path):
        began = time.monotonic()
        if self.cpu:
            self.llm.collective_rpc(_load_weights_cpu, args=(path,))
        else:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        self.llm.reset_prefix_cache()  # cached keys and values belong to the old weights
        return {"load_s": time.monotonic() - began}

    def sleep(self):
        self.llm.sleep(level=2)  # weights and KV cache freed: the next weights are loaded after waking anyway
        return {}

    def wake(self):
        self.llm.wake_up()
        return {}


_PACK = []  # vLLM's CPU weight packing, as it was before _keep_cpu_weights


def _keep_cpu_weights():
    """The CPU build packs each linear layer's weight for its GEMM kernels and drops the weight itself, so
    `reload_weights` has nothing to load into and leaves the packed copies stale. Keeping the weights (a
    second copy of the linear layers) lets new weights load in place and be packed again."""
    from vllm.model_executor.layers import utils

    if not _PACK:
        _PACK.append(utils.dispatch_cpu_unquantized_gemm)
        utils.dispatch_cpu_unquantized_gemm = lambda layer, remove_weight: _PACK[0](layer, remove_weight=False)


def _load_weights_cpu(worker, path):
    """Copy a model folder's tensors into the running model through its own loader (which maps checkpoint names
    onto vLLM's fused layers), then pack every layer's kernel weights again."""
    from pathlib import Path

    from safetensors.torch import load_file

    model = worker.model_runner.get_model()
    for shard in sorted(Path(path).glob("*.safetensors")):
        model.load_weights(load_file(shard).items())
    for layer in model.modules():
        if hasattr(layer, "cpu_linear"):
            _PACK[0](layer, remove_weight=False)


def _reseed(worker, seed):
    import torch

    torch.manual_seed(seed)


def main():
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # vLLM prints to stdout; keep that out of the answers
    server = Server()
    for line in sys.stdin:  # EOF (raft exited or was killed) ends the engine
        request = json.loads(line)
        op = request.pop("op", None)
        if op == "close":
            answers.write(json.dumps({"ok": True}) + "\n")
            break
        try:
            if op not in OPS:
                raise ValueError(f"unknown op {op!r}; one of {OPS} or close")
            answer = {"ok": True, **getattr(server, op)(**request)}
        except Exception as error:  # the caller raises it with the engine's traceback
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
