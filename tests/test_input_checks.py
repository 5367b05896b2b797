"""Bad input fails before any model loads, in one line, with exit status 2 (issue #11, item 4).

Each case runs raft's real entry point in this process, with model loading made to fail loudly: a check that
comes too late shows up as that failure instead of the expected line.
"""

from __future__ import annotations

import gzip
import json
import sys

import pytest
from transformers import PreTrainedModel

from raft.cli.main import hydra_main
from raft.cli.resolvers import asset_path

QUICK = ["model=tiny"]  # nothing should run: any model load fails the test at once


def run_entry_point(monkeypatch, capsys, tmp_path, *overrides: str) -> str:
    """raft's command line with `overrides`; returns the one line it printed (asserting exit 2, nothing else)."""

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(no_model))
    monkeypatch.setattr(sys, "argv", ["raft", *QUICK, *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exit_info:
        hydra_main()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("raft: error: "), err[-3000:]
    assert not list((tmp_path / "run").glob("iter_*"))
    return lines[0]


def pairs_rows(n: int = 20) -> list[dict]:
    with gzip.open(asset_path("hh_rlhf/harmless-base.jsonl.gz"), "rt", encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


@pytest.mark.parametrize(
    "override, message",
    [
        ("module.lr=-1", "module.lr must be > 0, got -1"),
        ("module.batch_size=0", "module.batch_size must be >= 1, got 0"),
        ("module.warmup_ratio=1.5", "module.warmup_ratio must be in [0, 1)"),
        ("trainer.max_epochs=-1", "trainer.max_epochs must be >= 1"),
        ("trainer.precision=foo", "trainer: Precision 'foo' is invalid"),
        ("trainer.devices=2", "launch it with `torchrun --nproc_per_node 2 -m raft"),
        (
            "logger=wandb logger.backends.wandb.mode=foo",
            "logger.backends.wandb.mode must be online, offline, disabled or null",
        ),
        ("task=ppo module.clip_range=-1", "module.clip_range must be >= 0"),
        ("task=sft module.lr=0", "module.lr must be > 0"),
        ("module=raftpp module.batch_size=0", "module.batch_size must be >= 1"),
        ("task=grpo module.lr=-1", "module.lr must be > 0"),
        ("task=reward_model module.batch_size=0", "module.batch_size must be >= 1"),
        ("task=pipeline task.stages.reward_model.module.lr=-2", "task.stages.reward_model.module.lr must be > 0"),
        ("model=hf_causal_lm", "no value given for model.name_or_path: set it on the command line"),
        ("sampler.K=${nope}", "sampler.K: Interpolation key 'nope' not found"),
        ("module.lr=${nope}", "module.lr: Interpolation key 'nope' not found"),
        ("task.init_checkpoint=/no/such/checkpoint", "task.init_checkpoint='/no/such/checkpoint' does not exist"),
    ],
)
def test_bad_value_is_one_line_before_any_model_loads(override, message, monkeypatch, capsys, tmp_path):
    line = run_entry_point(monkeypatch, capsys, tmp_path, *override.split())
    assert message in line


def test_broken_data_files_are_named_with_what_is_wrong(monkeypatch, capsys, tmp_path):
    rows = pairs_rows()
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    truncated = tmp_path / "truncated.jsonl.gz"
    packed = gzip.compress(text.encode())
    truncated.write_bytes(packed[: len(packed) // 2])
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes((text + '{"chosen": "caf\u00e9", "rejected": "th\u00e9"}\n').encode("latin-1", "replace"))
    lists = tmp_path / "lists.jsonl"
    lists.write_text("".join(json.dumps([r["chosen"], r["rejected"]]) + "\n" for r in rows))
    cases = {
        truncated: "is truncated or not gzip after line",
        latin1: f"line {len(rows) + 1} of {latin1} is not UTF-8 (byte 0xe9)",
        lists: "row 0 is a JSON list, expected an object with 'chosen' and 'rejected'",
    }
    for path, message in cases.items():
        line = run_entry_point(monkeypatch, capsys, tmp_path, "data=hh_rlhf", f"data.path={path}")
        assert message in line, line


def test_model_folder_without_weights_or_tokenizer(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    line = run_entry_point(monkeypatch, capsys, tmp_path, f"model.name_or_path={folder}")
    assert "has no weights" in line
    (folder / "model.safetensors").write_bytes(b"")
    line = run_entry_point(monkeypatch, capsys, tmp_path, f"model.name_or_path={folder}")
    assert "has no tokenizer files" in line


def test_damaged_init_checkpoint_is_refused(monkeypatch, capsys, tmp_path):
    from raft.infra.atomic import atomic_dir

    checkpoint = tmp_path / "checkpoint"
    with atomic_dir(checkpoint) as tmp:
        (tmp / "model.safetensors").write_bytes(b"x" * 100)
    (checkpoint / "model.safetensors").write_bytes(b"x" * 10)  # truncated after it was finished
    line = run_entry_point(monkeypatch, capsys, tmp_path, f"task.init_checkpoint={checkpoint}")
    assert "fails its manifest check" in line
