"""Two processes under torchrun (CPU, gloo): rank 0 samples, scores, selects and evaluates; both fine-tune."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from raft.distributed import global_rank, local_rank, wait_for, world_size

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_come_from_torchrun_or_slurm(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert (global_rank(), local_rank(), world_size()) == (0, 0, 1)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert (global_rank(), world_size()) == (3, 4)
    monkeypatch.setenv("RANK", "1")  # torchrun's variables win
    assert global_rank() == 1


def test_waiting_for_a_file_that_never_comes_times_out(tmp_path):
    with pytest.raises(TimeoutError, match="did not appear"):
        wait_for(tmp_path / "selected.jsonl", poll_s=0.01, timeout_s=0.05)


@pytest.mark.slow
def test_two_ranks_run_one_raft_loop(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "raft",
        "model=tiny",
        "task.iterations=2",
        "task.batch_size=4",
        "sampler.max_new_tokens=6",
        "sampler.K=2",
        "evaluator.n_prompts=4",
        "trainer.max_epochs=1",
        "trainer.precision=32",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stdout + result.stderr  # rank 1 joined the distributed fine-tuning
    assert result.stdout.count("Before/after on 4 held-out prompts") == 1  # only rank 0 evaluates and reports
    for t in (0, 1):
        metrics = json.loads((tmp_path / f"iter_{t:03d}" / "metrics.json").read_text())
        assert metrics["world_size"] == 2
        samples = (tmp_path / f"iter_{t:03d}" / "samples.jsonl").read_text().splitlines()
        assert len(samples) == 4 * 2  # sampled once (by rank 0), not once per rank
    assert (tmp_path / "iter_001" / "checkpoint" / "config.json").exists()
    assert not list(tmp_path.glob(".rank*"))  # rank 1's scratch folder is gone
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3
