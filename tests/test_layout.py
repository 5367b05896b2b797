"""The package's shape (issue #27): folders that mirror the config groups, none importing one that imports it back,
none named like a standard-library module, and one place where a Lightning fit runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "raft"
IMPORT = re.compile(r"^\s*(?:from|import) raft\.(\w+)", re.M)


def folders() -> list[Path]:
    return sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def test_the_top_level_is_folders_only():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []


def test_no_folder_shadows_a_standard_library_module():
    """`raft/selection/` once broke `python -m raft` run from inside raft/: the standard library's `selectors`
    (which subprocess imports) was found there first."""
    clashes = [p.name for p in folders() if p.name in sys.stdlib_module_names]
    assert clashes == []


def test_no_folder_imports_one_that_imports_it_back():
    imports = {
        folder.name: {m for f in folder.rglob("*.py") for m in IMPORT.findall(f.read_text())} - {folder.name}
        for folder in folders()
    }
    both_ways = sorted((a, b) for a, targets in imports.items() for b in targets if a in imports.get(b, ()) and a < b)
    assert both_ways == []


def test_one_place_runs_a_lightning_fit():
    calls = [
        f"{f.relative_to(PACKAGE)}:{n}"
        for f in PACKAGE.rglob("*.py")
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if ".fit(" in line
    ]
    assert len(calls) == 1 and calls[0].startswith("trainer/fit.py:"), calls
