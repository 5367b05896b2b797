"""The declared dependencies are what raft imports: every imported package declared, nothing declared unused."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
# used without an import of raft's: transformers reads GGUF weights with gguf; math-verify parses LaTeX on the
# ANTLR runtime hydra-core also pins; Hydra finds its plugins itself; Lightning's TensorBoardLogger writes through
# tensorboardX; the test and docs tools
NOT_IMPORTED = {
    "gguf",
    "antlr4-python3-runtime",
    "hydra-optuna-sweeper",
    "hydra-joblib-launcher",
    "hydra-submitit-launcher",
    "tensorboardx",
    "pytest",
    "ruff",
    "mkdocs",
    "raft-align",
}
# modules of optional packages that need not be installed here, and the distribution each comes from
NOT_INSTALLED = {"mlflow": "mlflow", "vllm": "vllm", "deepspeed": "deepspeed", "trl": "trl"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))


def imported_modules(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"raft", "conftest", "__future__"}


def distributions(modules: set[str]) -> set[str]:
    installed = packages_distributions()
    found = set()
    for module in modules:
        dists = installed.get(module) or [NOT_INSTALLED.get(module, f"<unknown: {module}>")]
        found |= {normalise(d) for d in dists}
    return found


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    extras = {requirement_name(r) for rs in project["optional-dependencies"].values() for r in rs}
    return core, extras


def test_every_package_raft_imports_is_declared_and_nothing_declared_is_unused():
    core, extras = declared()
    used = distributions(imported_modules(ROOT / "raft"))
    bench = distributions(imported_modules(ROOT / "benchmarks")) - used
    assert used - core - extras == set(), "imported by raft but not declared in pyproject.toml"
    assert core - used - NOT_IMPORTED == set(), "declared but never imported by raft"
    assert extras - used - bench - NOT_IMPORTED == set(), "an extra's package that nothing uses"


def test_optional_packages_are_extras_not_requirements():
    core, extras = declared()
    assert {"mlflow", "vllm", "deepspeed", "trl", "hydra-optuna-sweeper", "hydra-submitit-launcher"} <= extras
    assert not core & {"mlflow", "vllm", "deepspeed", "trl", "hydra-optuna-sweeper", "hydra-joblib-launcher"}
