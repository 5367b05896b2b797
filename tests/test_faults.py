"""Fault injection (issue #11, item 5): a small run is SIGKILLed at every write it makes, resumed after each kill,
and must end exactly as a run that was never stopped: the same metrics.csv, selected sets, evaluation and weights.

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
from run_outcome import SMALL_RUN as RUN
from run_outcome import differences, outcome

pytestmark = pytest.mark.slow


# Lives fork from a server process that has imported raft and nothing else: fast to start, and free of the
# threads (torch's pools, W&B's service) that earlier tests leave in this process, which a plain fork inherits
# and can hang on.
FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["raft.cli.main"])


def _life(base: Path, kill_at: str | None, log: Path | None) -> None:
    for name, value in (("RAFT_KILL_AT", kill_at), ("RAFT_FAULT_LOG", log)):
        os.environ.pop(name, None)
        if value:
            os.environ[name] = str(value)
    sys.argv = ["raft", *RUN, f"evaluator.cache_dir={base / 'cache'}", f"hydra.run.dir={base / 'run'}"]
    from raft.cli.main import hydra_main

    hydra_main()


def life(base: Path, kill_at: str | None = None, log: Path | None = None) -> int:
    """One life of the run in `base` (killed at `kill_at`, if given); its exit code (-9: SIGKILL)."""
    process = FORKSERVER.Process(target=_life, args=(base, kill_at, log))
    process.start()
    process.join(600)
    return process.exitcode


def test_a_run_killed_at_every_write_ends_as_an_uninterrupted_one(tmp_path):
    straight, log = tmp_path / "straight", tmp_path / "points.txt"
    assert life(straight, log=log) == 0
    points = list(dict.fromkeys(log.read_text().splitlines()))  # in order, first time each
    inside = [p for p in points if p.startswith("inside:")]
    after = [p for p in points if p.startswith("after:")][::3]  # a sample of the moments just after a rename
    chain = [p for p in points if p in set(inside + after)]
    written = {Path(p.split(":", 1)[1]).name for p in inside}
    assert {"samples.jsonl", "scored.jsonl", "selected.jsonl", "checkpoint", "kl_samples.jsonl"} <= written
    assert {"metrics.json", "metrics.csv", "eval_metrics.json", "evaluation.json", "config_fingerprint.json"} <= written

    resumed = tmp_path / "resumed"
    for point in chain:  # each life dies at the next point; the one after it resumes from what is on disk
        assert life(resumed, kill_at=point.replace(str(straight), str(resumed))) == -signal.SIGKILL, point
    assert life(resumed) == 0

    expected, got = outcome(straight / "run"), outcome(resumed / "run")
    assert len(expected["selected"]) == 2 and len(expected["weights"]) == 2 and expected["evaluation"]
    assert differences(got, expected) == []
    assert not list((resumed / "run").rglob("*.partial")) and not list((resumed / "run").rglob(".*.tmp"))
