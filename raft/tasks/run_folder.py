"""One run folder, one configuration, one process at a time.

A command run again resumes in its folder; that is only right if it is the same configuration. The folder
keeps a fingerprint of the composed config (`config_fingerprint.json`) without the keys that cannot change
what finished stages hold (how many seeds a sweep has, how long the run goes on, evaluation cadence,
threads, trackers); a different configuration stops with the keys that differ. An exclusive lock keeps a
second process out of a folder that one is working in.

The same settings can mean another run when the code or the files behind them changed: a user's reward class
that now scores differently, a data file rewritten in place. So the fingerprint also holds, for the `reward`
and `data` configs (and reward or data configs written inline elsewhere), `<key>._target_@code`: a sha256 of
the source file that defines each target, and `<key>@sha256`: a sha256 of the contents of each file or folder
a setting names (never a modification time). A change there stops a resume like a changed setting does, with
the same `allow_changed_config=true` to continue anyway.

raft's own files count as a user's do, one file per target: a raft upgrade that changes how exact match or a
data set behaves stops the runs that use it, since resuming would mix two rewards (or two data sets) in one
run, and leaves every other run resumable. Digesting the whole raft package instead would stop every old run
at every upgrade, whatever it changed, and a check that always fires is one people learn to switch off.
Paths inside the run folder are the run's own outputs (the reward model a pipeline trains), checked by the
stages that write them; a digest absent from a recorded fingerprint (a run started before raft kept them, or
a file that did not exist then) is recorded now rather than counted as a change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from raft.evaluation.cache import code_digest, path_digest
from raft.infra.atomic import atomic_write_text
from raft.infra.locks import FolderBusy, file_lock

FINGERPRINT = "config_fingerprint.json"
IGNORED_KEYS = {"seeds", "objective", "logger", "allow_changed_config", "hydra"}
# anywhere in the tree: how long and how a run runs, not what it computes
IGNORED_LEAVES = {"iterations", "every", "torch_threads", "heap_mmap_threshold_mb", "keep_checkpoints"}
_held: dict[Path, Any] = {}  # folder -> its lock, held as long as the process lives


def fingerprint(cfg: DictConfig) -> dict[str, str]:
    """Dotted key -> value (interpolations as written) of everything that decides a run's results."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                dotted = f"{prefix}{key}"
                if dotted not in IGNORED_KEYS and str(key) not in IGNORED_LEAVES:
                    walk(value, dotted + ".")
        else:
            flat[prefix[:-1]] = json.dumps(node, sort_keys=True, default=str)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return flat


DIGESTED = {"reward", "data", "eval_rewards"}  # the configs whose code and files decide scores and prompts
DIGEST_SUFFIXES = ("@code", "@sha256")


def digests(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, str]:
    """`<key>._target_@code` and `<key>@sha256` digests of the reward's and data's code and files (see above).

    The top-level `reward` and `data` configs, and any other config under such a name that is written where it
    stands (an interpolation such as `${reward}` is digested where its value is written)."""
    out: dict[str, str] = {}
    run_dir = Path(run_dir).resolve() if run_dir is not None else None

    def walk(node: Any, prefix: str, inside: bool) -> None:
        keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
        for key in keys:
            dotted = f"{prefix}{key}"
            if not inside and prefix == "" and dotted in IGNORED_KEYS:
                continue
            written_here = not OmegaConf.is_interpolation(node, key)
            if not (inside or written_here):
                continue  # outside reward and data an interpolation leads nowhere new (nor is resolved)
            try:
                value = node[key]  # resolves an interpolation (${raft_asset:...} to a path)
            except Exception:  # noqa: BLE001  (??? or ${hydra:...} outside a Hydra app: nothing to read)
                continue
            if OmegaConf.is_config(value):
                if written_here:
                    walk(value, dotted + ".", inside or (str(key) in DIGESTED))
            elif inside and isinstance(value, str):
                if key == "_target_":
                    digest = target_digest(value)
                    if digest is not None:
                        out[f"{dotted}@code"] = digest
                elif not _in_run(value, run_dir):
                    digest = path_digest(value)
                    if digest is not None:
                        out[f"{dotted}@sha256"] = digest

    walk(cfg, "", False)
    return out


def target_digest(target: str) -> str | None:
    """sha256 of the source file of a `_target_` (class or function); None where it cannot be found."""
    from hydra.utils import get_object

    try:
        return code_digest(get_object(target))
    except Exception:  # noqa: BLE001  (build_task reports a target it cannot import; here it is no file)
        return None


def _in_run(value: str, run_dir: Path | None) -> bool:
    """Whether `value` names the run folder, something in it or a folder holding it (all change as it runs)."""
    if run_dir is None:
        return False
    try:
        path = Path(value).expanduser().resolve()
    except (OSError, ValueError, RuntimeError):
        return False
    return path == run_dir or run_dir in path.parents or path in run_dir.parents


def differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """Keys whose values differ; a digest the record lacks is not one (see the module's docstring)."""
    return sorted(
        k
        for k in recorded.keys() | current.keys()
        if recorded.get(k) != current.get(k) and not (k not in recorded and k.endswith(DIGEST_SUFFIXES))
    )


def remove_stale_temporaries(run_dir: Path) -> None:
    """Files a killed write left under their temporary names (raft/infra/atomic.py): garbage once the lock is ours."""
    for stale in run_dir.rglob(".*.tmp"):
        if "wandb" not in stale.relative_to(run_dir).parts:  # W&B's own files are W&B's business
            stale.unlink(missing_ok=True)


def claim(run_dir: Path, cfg: DictConfig, allow_changed: bool = False) -> None:
    """Lock `run_dir` for this process and check (or record) its configuration; ValueError in one line."""
    run_dir = Path(run_dir).resolve()
    if run_dir not in _held:  # a sweep runs many jobs in one process, and may come back to a folder
        lock = file_lock(run_dir / ".raft.lock", wait=False)
        try:
            lock.__enter__()
        except FolderBusy:
            raise ValueError(
                f"another raft process is working in {run_dir}: wait for it to finish, or run elsewhere (name=...)"
            ) from None
        _held[run_dir] = lock
        remove_stale_temporaries(run_dir)
    current = {**fingerprint(cfg), **digests(cfg, run_dir)}
    path = run_dir / FINGERPRINT
    if path.exists() and not allow_changed:
        recorded = json.loads(path.read_text())
        changed = differences(recorded, current)
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            what = ""
            if any(k.endswith(DIGEST_SUFFIXES) for k in changed):
                what = "; @code: the source file defining that target changed, @sha256: the file that setting names"
            raise ValueError(
                f"{run_dir} holds a run of another configuration ({shown} differ{what}): start it in a new folder "
                "(name=...), or continue this one with allow_changed_config=true"
            )
    atomic_write_text(path, json.dumps(current, indent=1, sort_keys=True))
