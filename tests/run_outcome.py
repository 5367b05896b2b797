"""Tooling of the fault tests (tests/test_faults.py, scripts/random_kill.py): the small run they kill, and what a
finished run ends with, to compare a resumed run with one never stopped. Timing and memory readings are left out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

# The small run the fault tools kill (tests/test_faults.py, scripts/random_kill.py): the tiny model, two
# iterations, both checkpoints kept, a reward that varies on its text.
SMALL_RUN = [
    "model=tiny",
    "reward=pattern_count",
    "reward.pattern=e",
    "task.iterations=2",
    "task.batch_size=2",
    "task.keep_checkpoints=2",
    "sampler.K=2",
    "sampler.max_new_tokens=8",
    "evaluator.n_prompts=2",
    "trainer.max_epochs=1",
]

# The digits preset shrunk to a 3-step pixel UNet (pretrained within the run) drawing 4 prompts x K = 2 images per
# iteration; the caller sets `model.pretrained_dir` (and the iterations). Also the image tests' small run.
TINY_DIGITS = [
    "experiment=digits_alignment",
    "model.base_resolution=8",
    "model.channels=[8,16,16]",
    "model.pretrain_steps=3",
    "model.pretrain_batch_size=16",
    "model.bf16=false",
    "model.pretrain_trainer.precision=32-true",
    "sampler.K=2",
    "sampler.steps=2",
    "sampler.resolution=8",
    "sampler.batch_size=8",
    "data.in_domain=[1,2]",
    "data.out_of_domain=[3]",
    "trainer.max_steps=2",
    "trainer.precision=32-true",
    "task.batch_size=4",
    "task.eval_sampler.K=2",
    "task.grid_samples=2",
    "filters=none",  # a 2-step base draws grey noise, which digits_clean drops whole (an empty stage stops)
]

# The same for an image policy: two iterations of TINY_DIGITS, both checkpoints kept.
SMALL_IMAGE_RUN = [*TINY_DIGITS, "task.iterations=2", "task.keep_checkpoints=2"]

UNTIMED = {"wall_time_s", "training_cost"}
UNTIMED_PREFIXES = ("seconds_", "peak_rss_mb", "peak_cuda_mb")  # a stage's own time and memory too


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in UNTIMED and not str(k).startswith(UNTIMED_PREFIXES)}
    return value


def outcome(run: Path) -> dict:
    """metrics.csv rows, each stage's selected set, evaluation.json and every kept checkpoint's tensors."""
    run = Path(run)
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = [untimed(row) for row in csv.DictReader(f)]
    evaluation = run / "evaluation.json"
    return {
        "metrics.csv": rows,
        "selected": {p.parent.name: p.read_text() for p in sorted(run.glob("iter_*/selected.jsonl"))},
        # as text: NaN (no perplexity without references) equals itself there
        "evaluation": json.dumps(untimed(json.loads(evaluation.read_text())), sort_keys=True)
        if evaluation.exists()
        else None,
        "weights": {c.parent.name: checkpoint_tensors(c) for c in sorted(run.glob("iter_*/checkpoint"))},
    }


def checkpoint_tensors(folder: Path) -> dict:
    """Every tensor a checkpoint folder holds (a causal LM's model.safetensors, a UNet's unet/ folder)."""
    return {
        f"{p.relative_to(folder)}:{k}": v
        for p in sorted(folder.rglob("*.safetensors"))
        for k, v in load_file(p).items()
    }


def differences(a: dict, b: dict) -> list[str]:
    """The parts of two outcomes that differ (empty: the runs ended the same)."""
    differ = [part for part in ("metrics.csv", "selected", "evaluation") if a[part] != b[part]]
    wa, wb = a["weights"], b["weights"]
    same = wa.keys() == wb.keys() and all(
        wa[i].keys() == wb[i].keys() and all(torch.equal(wa[i][k], wb[i][k]) for k in wa[i]) for i in wa
    )
    return differ + ([] if same else ["weights"])
