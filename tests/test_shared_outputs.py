"""Outputs others can read and parse: files with the permissions the user's umask gives any new file (not
mkstemp's 0600), and strict JSON (null, not NaN or Infinity, which strict readers reject)."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
from PIL import Image

from raft.evaluation.evaluator import Evaluator
from raft.infra import strict_json
from raft.infra.atomic import atomic_dir, atomic_write_text
from raft.rewards.pattern import PatternCount
from raft.sampling.images import save_png
from raft.trackers.tracking import Tracker, read_metrics_csv


@pytest.fixture(params=[0o022, 0o027], ids=["umask_022", "umask_027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_folders_get_the_umasks_permissions(tmp_path, umask):
    atomic_write_text(tmp_path / "evaluation.json", "{}")
    with atomic_dir(tmp_path / "checkpoint") as tmp:
        (tmp / "model.safetensors").write_bytes(b"weights")
    save_png(Image.new("RGB", (2, 2)), tmp_path / "sample.png")
    tracker = Tracker(tmp_path / "run")
    tracker.log_iteration({"iteration": 0, "policy_reward": 0.5})
    tracker.close()

    files = ["evaluation.json", "checkpoint/model.safetensors", "checkpoint/MANIFEST.json", "sample.png"]
    files += ["run/metrics.csv", "run/tracking_step.txt"]
    assert {f: oct(mode(tmp_path / f)) for f in files} == {f: oct(0o666 & ~umask) for f in files}
    assert oct(mode(tmp_path / "checkpoint")) == oct(0o777 & ~umask)


def strict_loads(text: str):
    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=reject)


def test_json_files_hold_null_for_non_finite_numbers_and_raft_reads_them_back_as_nan(tmp_path):
    evaluator = Evaluator(reward=PatternCount(pattern="e"), sampler=None)
    written = evaluator.evaluate_responses(["a", "b"], ["hello", "there"], tmp_path / "eval")  # no perplexity: NaN
    assert math.isnan(written["ppl"])
    assert strict_loads((tmp_path / "eval" / "eval_metrics.json").read_text())["ppl"] is None
    cached = evaluator.evaluate_responses(["a", "b"], ["hello", "there"], tmp_path / "eval")
    assert math.isnan(cached["ppl"]) and cached["reward"] == written["reward"]

    value = {"loss": math.inf, "steps": [1.0, -math.inf, math.nan], "name": None}
    assert strict_loads(strict_json.dumps(value)) == {"loss": None, "steps": [1.0, None, None], "name": None}

    # a resumed run's CSV rows come from the iterations' metrics.json: NaN there as in a live row
    atomic_write_text(
        tmp_path / "run" / "iter_000" / "metrics.json", strict_json.dumps({"iteration": 0, "kl": math.nan})
    )
    Tracker(tmp_path / "run")
    assert read_metrics_csv(tmp_path / "run" / "metrics.csv")[0]["kl"] == "nan"
