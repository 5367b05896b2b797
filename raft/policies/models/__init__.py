from raft.policies.models.loading import check_model_name, load_causal_lm, resolve_model_path
from raft.policies.models.tiny import build_tiny_causal_lm

__all__ = ["build_tiny_causal_lm", "check_model_name", "load_causal_lm", "resolve_model_path"]
