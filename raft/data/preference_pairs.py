"""Preference pairs in the HH-RLHF layout: parsing, loading, and a deterministic train/test split."""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class Pair:
    """One prompt with a preferred and a dispreferred response. The prompt ends with '\\n\\nAssistant:'.

    Responses keep the text exactly as it follows the prompt (" That is..."): a raw-dialogue model
    produces that leading space inside its first token, so it must not be stripped.
    """

    prompt: str
    chosen: str
    rejected: str


@dataclass
class LoadReport:
    """What loading dropped, so a user can see why there are fewer pairs than rows."""

    rows: int = 0
    identical_dropped: int = 0
    prompts_disagreed: int = 0  # chosen/rejected last-Assistant prompts differed; shared prefix used


def split_dialogue(dialogue: str, where: str = "data.path: dialogue") -> tuple[str, str]:
    """Split a full dialogue into (prompt up to and including the last Assistant turn, response)."""
    cut = dialogue.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError(f"{where} has no '\\n\\nAssistant:' turn")
    cut += len(ASSISTANT)
    return dialogue[:cut], dialogue[cut:]


def _shared_prompt(chosen: str, rejected: str) -> str | None:
    """Longest common prefix of both dialogues that ends with an Assistant turn, or None."""
    n = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n)
    return None if cut < 0 else chosen[: cut + len(ASSISTANT)]


def parse_row(row: dict[str, Any], index: int, report: LoadReport | None = None, source: str = "data.path") -> Pair:
    """Build a Pair from either layout: full dialogues (Anthropic) or a separate `prompt` column (Dahoas)."""
    if not isinstance(row, dict):
        raise ValueError(
            f"{source}: row {index} is a JSON {type(row).__name__}, expected an object with 'chosen' and 'rejected'"
        )
    for field in ("chosen", "rejected"):
        if not isinstance(row.get(field), str):
            raise ValueError(f"{source}: row {index} has no '{field}' field")
    if isinstance(row.get("prompt"), str):
        return Pair(row["prompt"], row["chosen"], row["rejected"])

    prompt, chosen = split_dialogue(row["chosen"], f"{source}: row {index} 'chosen'")
    if row["rejected"].startswith(prompt):
        return Pair(prompt, chosen, row["rejected"][len(prompt) :])
    # A response that itself contains "\n\nAssistant:" moves the last turn; the true prompt is then
    # the part both dialogues share, so the two responses answer the same context.
    shared = _shared_prompt(row["chosen"], row["rejected"])
    if shared is None:
        _, rejected = split_dialogue(row["rejected"], f"{source}: row {index} 'rejected'")
        return Pair(prompt, chosen, rejected)
    if report is not None:
        report.prompts_disagreed += 1
    return Pair(shared, row["chosen"][len(shared) :], row["rejected"][len(shared) :])


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    """JSON lines (gzipped when the name ends in .gz); a broken file is one ValueError naming what is wrong."""
    opener = gzip.open if path.name.endswith(".gz") else open
    line_no = 0
    try:
        with opener(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):  # noqa: B007 (read in except) - bytes: an encoding error names its line
                line = raw.decode("utf-8")
                if line.strip():
                    yield json.loads(line)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"data.path: line {line_no} of {path} is not UTF-8 (byte 0x{e.object[e.start]:02x}); "
            "convert the file, e.g. iconv -f latin1 -t utf-8"
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"data.path: line {line_no} of {path} is not JSON ({e.msg})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"data.path: {path} is truncated or not gzip after line {line_no} ({e})") from None


def read_lines(path: Path, field: str) -> list[str]:
    """A UTF-8 text file's non-empty lines, stripped; a file in another encoding is one ValueError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{field}: {path} is not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_hub(dataset_id: str, split: str) -> Iterable[dict[str, Any]]:
    import datasets  # lazy: heavy import, and only hub ids need it

    return datasets.load_dataset(dataset_id, split=split)


def is_hub_id(path: str) -> bool:
    """'owner/name' that is not a file here and has no file suffix, e.g. Anthropic/hh-rlhf."""
    if Path(path).expanduser().exists() or path.endswith((".jsonl", ".gz", ".json")):
        return False
    return re.fullmatch(r"[\w.-]+/[\w.-]+", path) is not None


def load_pairs(path: str, hub_split: str = "train", report: LoadReport | None = None) -> list[Pair]:
    """Read all pairs from a local JSON-lines file or a hub dataset; drop pairs with identical responses."""
    report = report if report is not None else LoadReport()
    if not is_hub_id(path):
        local = Path(path).expanduser()
        if not local.is_file():
            raise ValueError(f"data.path={path!r} does not exist")
        rows = _read_jsonl(local)
    else:
        rows = _read_hub(path, hub_split)
    pairs = []
    for i, row in enumerate(rows):
        report.rows += 1
        pair = parse_row(row, i, report)
        if pair.chosen.strip() == pair.rejected.strip():
            report.identical_dropped += 1
            continue
        pairs.append(pair)
    return pairs


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded shuffle of 0..n-1; the first round(n * test_fraction) indices are the test set (sorted)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = round(n * test_fraction)
    return sorted(order[n_test:]), sorted(order[:n_test])


def split_pairs(
    pairs: list[Pair],
    test_fraction: float,
    seed: int,
    max_train: int | None = None,
    max_test: int | None = None,
    max_prompt_chars: int | None = None,
) -> dict[str, list[Pair]]:
    """Split by index first, then filter and cap, so a pair's side never depends on the filters."""
    train_idx, test_idx = split_indices(len(pairs), test_fraction, seed)
    out = {}
    for name, idx, cap in (("train", train_idx, max_train), ("test", test_idx, max_test)):
        chosen = [pairs[i] for i in idx if max_prompt_chars is None or len(pairs[i].prompt) <= max_prompt_chars]
        out[name] = chosen[:cap] if cap is not None else chosen
    return out
