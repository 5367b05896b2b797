"""Reads an offline W&B run back from its `.wandb` file (the records wandb-core wrote): history rows, config,
summary, group. The file is a LevelDB-style log of `wandb_internal_pb2.Record` messages: a 7-byte header,
then 32 KiB blocks of chunks, each chunk `crc32 (4) | length (2) | type (1: full, 2: first, 3: middle, 4: last)`."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK, HEADER, CHUNK_HEADER = 32768, 7, 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0:  # zero padding to the block's end
            pos += left
            continue
        pending += data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    folder: Path
    run_id: str = ""
    group: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # name, {entry: staged file}

    @classmethod
    def read(cls, folder: Path) -> "OfflineRun":
        (path,) = Path(folder).glob("*.wandb")
        run = cls(Path(folder))
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.run_id, run.group = record.run.run_id, record.run.run_group
                run.config.update({_key(u): json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "config":
                run.config.update({_key(u): json.loads(u.value_json) for u in record.config.update})
            elif kind == "history":
                run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "artifact":
                entries = {e.path: e.local_path for e in record.artifact.manifest.contents}
                run.artifacts.append((record.artifact.name, entries))
            elif kind == "summary":
                run.summary.update({_key(u): json.loads(u.value_json) for u in record.summary.update})
        return run

    def rows_with(self, key: str) -> list[dict]:
        return [row for row in self.history if key in row]

    def table_rows(self, key: str) -> list[list]:
        """The rows of an incremental table as W&B keeps them (media as references to the increment's files):
        every increment's artifact, in the order they were logged (staged under WANDB_DATA_DIR until synced)."""
        rows = []
        for name, entries in self.artifacts:
            if name == f"run-{self.run_id}-incr-{key}":
                (table,) = [local for entry, local in entries.items() if entry.endswith(".table.json")]
                rows += json.loads(Path(table).read_text())["data"]
        return rows

    def artifact_entries(self, key: str) -> set[str]:
        return {
            entry for name, entries in self.artifacts if name == f"run-{self.run_id}-incr-{key}" for entry in entries
        }


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under `<dir>/wandb/`, oldest first (a resumed offline run is a second folder)."""
    return [OfflineRun.read(folder) for folder in sorted(Path(wandb_dir).glob("wandb/offline-run-*"))]
