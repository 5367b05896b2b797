"""The config a tracker files a run under: the composed config, with K, λ, β, seed and the preset on top, so a
sweep's runs can be grouped, filtered and drawn as parallel coordinates by those fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# top-level field -> where the composed config holds it (the paper's K, λ = sampling temperature, β of eq. 5)
SWEEP_FIELDS = {"K": "sampler.K", "lambda": "sampler.temperature", "beta": "selector.beta", "seed": "seed"}


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """`<run>/.hydra/config.yaml` resolved (values that only resolve inside Hydra's app stay as written), plus
    the sweep fields and `preset` (the `experiment=` choice, `default` without one). A pipeline stage's folder
    has its run's config above it; empty outside Hydra."""
    from omegaconf import OmegaConf

    folders = [Path(run_dir) / ".hydra", Path(run_dir).parent / ".hydra"]  # a pipeline's stage: the run's config
    hydra_dir = next((f for f in folders if (f / "config.yaml").exists()), None)
    if hydra_dir is None:
        return {}
    cfg = OmegaConf.load(hydra_dir / "config.yaml")
    config = resolved(cfg)
    top = {
        field: OmegaConf.select(cfg, key, default=None, throw_on_missing=False) for field, key in SWEEP_FIELDS.items()
    }
    choices = {}
    if (hydra_dir / "hydra.yaml").exists():
        choices = OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.get("choices", {})
    top["preset"] = choices.get("experiment") or "default"
    return {**top, **config}


def resolved(node: Any) -> Any:
    """A plain copy of `node`, each interpolation resolved where it can be (e.g. not `${hydra:...}` outside Hydra)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig):
        return {str(k): _value(node, k) for k in node.keys()}
    if isinstance(node, ListConfig):
        return [_value(node, i) for i in range(len(node))]
    return node if not OmegaConf.is_config(node) else OmegaConf.to_container(node)


def _value(parent: Any, key: Any) -> Any:
    try:
        return resolved(parent[key])
    except Exception:  # an interpolation only Hydra's running app resolves: keep its text
        return str(parent._get_node(key)._value())
