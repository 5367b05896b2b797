"""Two processes under torchrun (CPU, gloo): both sample and score their halves of a stage, rank 0 merges them,
selects and evaluates; both fine-tune."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raft.data.sources import EverydayPrompts
from raft.infra.distributed import global_rank, local_rank, wait_for, world_size
from raft.tasks.runner import prompt_batch

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


def test_every_trainer_gets_its_own_copy_of_a_strategy_object():
    """`trainer.strategy` given as an object is built once, inside the partial; each Trainer raft builds (the
    up-front check's, then one per stage) needs an unused one, or Lightning refuses the second."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from raft.trainer.checks import check_partial
    from raft.trainer.new_trainer import new_trainer

    strategy = {"_target_": "pytorch_lightning.strategies.SingleDeviceStrategy", "device": "cpu"}
    make = instantiate(
        OmegaConf.create(
            {
                "_target_": "pytorch_lightning.Trainer",
                "_partial_": True,
                "accelerator": "cpu",
                "strategy": strategy,
                "logger": False,
            }
        )
    )
    check_partial(make, "trainer")
    first, second = new_trainer(make), new_trainer(make, max_epochs=1)
    assert first.strategy is not second.strategy is not make.keywords["strategy"]
    make()  # the partial's own instance, used once ...
    with pytest.raises(Exception, match="accelerator set through both strategy class and accelerator flag"):
        make()  # ... is refused by the next Trainer: what every stage after the first did


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
        "task.keep_checkpoints=0",  # iteration 1 is redone below, from iteration 0's checkpoint
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
    for rank in (0, 1):  # each rank sampled its half of every stage
        assert (result.stdout + result.stderr).count(f"rank {rank} of 2 sampled 2 of the stage's 4 prompts") == 2
    assert result.stdout.count("Before/after on 4 held-out prompts") == 1  # only rank 0 evaluates and reports
    for t in (0, 1):
        metrics = json.loads((tmp_path / f"iter_{t:03d}" / "metrics.json").read_text())
        assert metrics["world_size"] == 2
        samples = [json.loads(line) for line in (tmp_path / f"iter_{t:03d}" / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 4 * 2  # the two halves once, merged in the one-process order
        batch = [idx for idx, _ in prompt_batch(EverydayPrompts().prompts("train"), t, 4, 0)]
        assert [(s["prompt_idx"], s["sample_idx"]) for s in samples] == [(i, j) for i in batch for j in (0, 1)]
        assert all(s["response_ids"] and s["prompt_ids"] and s["finish_reason"] for s in samples)
        assert not list((tmp_path / f"iter_{t:03d}").glob("*.part*"))  # the parts are merged away
    assert (tmp_path / "iter_001" / "checkpoint" / "config.json").exists()
    assert not list(tmp_path.glob(".rank*"))  # rank 1's scratch folder is gone
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3
    # a run killed during iteration 1: both ranks sample their halves again, from the same seeds
    stage = tmp_path / "iter_001"
    first = (stage / "samples.jsonl").read_text()
    for name in (
        "samples.jsonl",
        "scored.jsonl",
        "selected.jsonl",
        "filtered.json",
        "kl_samples.jsonl",
        "metrics.json",
    ):
        (stage / name).unlink(missing_ok=True)
    shutil.rmtree(stage / "checkpoint")
    (tmp_path / "evaluation.json").unlink()
    rerun = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (stage / "samples.jsonl").read_text() == first


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="Lightning's FSDP strategy runs on GPUs only (two here)")
def test_fsdp_saves_a_whole_checkpoint_that_loads(tmp_path):
    """Under FSDP each rank holds a shard; the stage's checkpoint is the whole model, gathered on rank 0."""
    from raft.policies.models import load_causal_lm

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "raft",
        "model=tiny",
        "task.iterations=1",
        "task.batch_size=4",
        "sampler.max_new_tokens=6",
        "sampler.K=2",
        "evaluator.n_prompts=4",
        "trainer.max_epochs=1",
        "trainer.precision=32",
        "trainer=fsdp",
        "trainer.devices=2",
        f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model, _ = load_causal_lm(str(tmp_path / "iter_000" / "checkpoint"))
    initial, _ = load_causal_lm("tiny-llama")
    trained, start = model.state_dict(), initial.state_dict()
    assert trained.keys() == start.keys()
    assert all(trained[k].shape == start[k].shape for k in start)  # whole tensors, not one rank's shards
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # and fine-tuned


@pytest.mark.slow
def test_fsdp_on_cpu_saves_a_whole_checkpoint_that_loads(tmp_path):
    """Lightning's FSDP strategy over gloo (tests/fsdp_on_cpu.py): each rank holds a shard while it trains; the
    stage's checkpoint is the whole model, gathered on rank 0. Iteration 1 samples from iteration 0's gathered
    checkpoint and trains on; both equal a DDP run's, so the gathered weights are the trained ones."""
    from raft.policies.models import load_causal_lm

    def run(strategy: str, folder: Path) -> dict:
        command = [
            *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"),
            *("-m", "raft", "model=tiny", "task.iterations=2", "task.batch_size=4", "sampler.max_new_tokens=6"),
            *("sampler.K=2", "evaluator.n_prompts=4", "trainer.max_epochs=1", "trainer.precision=32"),
            *(
                "trainer.accelerator=cpu",
                "trainer.devices=2",
                f"trainer.strategy={strategy}",
                f"hydra.run.dir={folder}",
            ),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "MEMBER: 2/2" in result.stdout + result.stderr
        return load_causal_lm(str(folder / "iter_001" / "checkpoint"))[0].state_dict()

    sharded = run("{_target_:fsdp_on_cpu.FSDPOnCPU}", tmp_path / "fsdp")
    replicated = run("ddp", tmp_path / "ddp")
    start = load_causal_lm("tiny-llama")[0].state_dict()
    assert sharded.keys() == start.keys()
    assert all(sharded[k].shape == start[k].shape for k in start)  # whole tensors, not one rank's shards
    assert any(not torch.equal(sharded[k], start[k]) for k in start)  # fine-tuned
    assert all(torch.allclose(sharded[k], replicated[k], atol=1e-6) for k in start)  # as DDP trained them
    for name in ("samples.jsonl", "selected.jsonl"):  # iteration 1 sampled from the gathered iteration-0 model
        assert (tmp_path / "fsdp" / "iter_001" / name).read_text() == (tmp_path / "ddp" / "iter_001" / name).read_text()
