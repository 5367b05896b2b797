"""Whether a model's forward takes a keyword, read from its signature (a PEFT wrapper's: its base model's).

transformers' forwards end in **kwargs, so a keyword they do not know is swallowed and ignored rather than refused:
asking first is the only way to know it will be used (`logits_to_keep`, the KV cache's `cache` / `past_key_values`).
"""

from __future__ import annotations

import inspect


def forward_takes(model, name: str) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(inner.forward).parameters
