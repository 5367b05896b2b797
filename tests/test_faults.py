"""Fault injection (issue #11, item 5; images: issue #27): a small run, of a language model and of an image model, is
SIGKILLed at every write it makes, resumed after each kill, and must end exactly as a run that was never stopped:
the same metrics.csv, selected sets, evaluation and weights.

The kill points come from the uninterrupted run itself (`RAFT_FAULT_LOG`, raft/infra/faults.py): every write, inside
(complete under its temporary name, not yet renamed) and a sample of just after. Each life of the run is forked from a
server process that has imported raft, running raft's real entry point: a kill costs no fresh interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path

import pytest
from run_outcome import SMALL_IMAGE_RUN, SMALL_RUN, differences, outcome

pytestmark = pytest.mark.slow


# Lives fork from a server process that has imported raft and nothing else: fast to start, and free of the
# threads (torch's pools, W&B's service) that earlier tests leave in this process, which a plain fork inherits
# and can hang on.
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["raft.cli.main"])


RUNS = {
    "text": SMALL_RUN,
    "image": SMALL_IMAGE_RUN,  # the pretrained UNet is made inside the run folder, so its writes are killed too
}


def _life(base: Path, kill_at: str | None, log: Path | None, run: str) -> None:
    for name, value in (("RAFT_KILL_AT", kill_at), ("RAFT_FAULT_LOG", log)):
        os.environ.pop(name, None)
        if value:
            os.environ[name] = str(value)
    # the image run's pretrained UNet and the text run's evaluation cache live in the run's own folder
    own = (
        [f"model.pretrained_dir={base / 'pretrained'}"] if run == "image" else [f"evaluator.cache_dir={base / 'cache'}"]
    )
    sys.argv = ["raft", *RUNS[run], *own, f"hydra.run.dir={base / 'run'}"]
    from raft.cli.main import hydra_main

    hydra_main()


def life(base: Path, kill_at: str | None = None, log: Path | None = None, run: str = "text") -> int:
    """One life of the run in `base` (killed at `kill_at`, if given); its exit code (-9: SIGKILL)."""
    process = FORKSERVER.Process(target=_life, args=(base, kill_at, log, run))
    process.start()
    process.join(600)
    return process.exitcode


@pytest.mark.parametrize("run", RUNS)
def test_a_run_killed_at_every_write_ends_as_an_uninterrupted_one(tmp_path, run):
    straight, log = tmp_path / "straight", tmp_path / "points.txt"
    assert life(straight, log=log, run=run) == 0
    points = list(dict.fromkeys(log.read_text().splitlines()))  # in order, first time each
    inside = [p for p in points if p.startswith("inside:")]
    after = [p for p in points if p.startswith("after:")][::3]  # a sample of the moments just after a rename
    if run == "image":  # every PNG is a write: a sample of them, every stage file and checkpoint
        inside = [p for p in inside if not p.endswith(".png")] + [p for p in inside if p.endswith(".png")][::8]
        after = [p for p in after if not p.endswith(".png")]
    chain = [p for p in points if p in set(inside + after)]
    written = {Path(p.split(":", 1)[1]).name for p in inside}
    assert {"samples.jsonl", "scored.jsonl", "selected.jsonl", "checkpoint", "metrics.json", "metrics.csv"} <= written
    if run == "text":
        assert {"kl_samples.jsonl", "eval_metrics.json", "evaluation.json", "config_fingerprint.json"} <= written

    resumed = tmp_path / "resumed"
    for point in chain:  # each life dies at the next point; the one after it resumes from what is on disk
        assert life(resumed, kill_at=point.replace(str(straight), str(resumed)), run=run) == -signal.SIGKILL, point
    assert life(resumed, run=run) == 0

    expected, got = outcome(straight / "run"), outcome(resumed / "run")
    assert len(expected["selected"]) == 2 and len(expected["weights"]) == 2 and expected["evaluation"]
    assert differences(got, expected) == []
    assert not list((resumed / "run").rglob("*.partial")) and not list((resumed / "run").rglob(".*.tmp"))
