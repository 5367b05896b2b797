"""Kill a small raft run with SIGKILL at random moments, resume it, and check it ends as a run never stopped.

    python scripts/random_kill.py --trials 20            # the tiny model, two iterations (about 1 min a trial)
    python scripts/random_kill.py --trials 5 -- model=smollm2 task.batch_size=4

Each trial starts the run in a fresh folder, waits until it has claimed its folder (imports done), kills its
whole process group at a moment drawn uniformly over the reference run's working time (sampling, scoring,
fine-tuning, a checkpoint or stage write: wherever it is; a run that finishes first is started again with a new
draw), then runs the same command again to the end
and compares metrics.csv, the selected sets, evaluation.json and the weights with the uninterrupted run's
(raft/run_outcome.py). It prints one line per trial and the tally; the exit status is 0 only if all passed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the fault tests' run and outcome
from run_outcome import SMALL_RUN as RUN  # noqa: E402
from run_outcome import differences, outcome  # noqa: E402


def start(base: Path, overrides: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "raft", *overrides]
    command += [f"evaluator.cache_dir={base / 'cache'}", f"hydra.run.dir={base / 'run'}"]
    log = open(base / "log.txt", "a")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def claimed(base: Path, process: subprocess.Popen) -> float:
    """Wait until the run has claimed its folder (its fingerprint is written); the time that took."""
    began = time.monotonic()
    while not (base / "run" / "config_fingerprint.json").exists() and process.poll() is None:
        time.sleep(0.05)
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--keep", help="a folder to keep the runs in (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", help="extra raft overrides, after --")
    args = parser.parse_args()
    overrides = RUN + args.overrides
    root = Path(args.keep or tempfile.mkdtemp(prefix="raft-random-kill-"))
    draw = random.Random(args.seed)

    reference = root / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    process = start(reference, overrides)
    setup = claimed(reference, process)
    began = time.monotonic()
    if process.wait() != 0:
        print(f"the reference run failed; see {reference / 'log.txt'}")
        return 1
    work = time.monotonic() - began
    expected = outcome(reference / "run")
    print(f"reference: {setup:.1f} s to start, {work:.1f} s of work; runs under {root}", flush=True)

    passed = 0
    for trial in range(args.trials):
        base = root / f"trial_{trial:02d}"
        for _attempt in range(5):  # a run faster than the reference may finish first: then draw again, afresh
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)
            process = start(base, overrides)
            claimed(base, process)
            delay = draw.uniform(0.0, work)
            time.sleep(delay)
            killed = process.poll() is None
            if killed:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if killed:
                break
        resumed = start(base, overrides).wait()
        problems = ["the resumed run failed"] if resumed != 0 else differences(outcome(base / "run"), expected)
        passed += not problems
        moment = f"killed {delay:5.1f} s in" if killed else f"finished before {delay:5.1f} s"
        print(f"trial {trial:2d}: {moment}: {'PASS' if not problems else 'FAIL ' + ', '.join(problems)}", flush=True)
    print(f"{passed}/{args.trials} trials ended as the uninterrupted run")
    return 0 if passed == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
