"""raft: Reward rAnked FineTuning for language and diffusion models."""

__version__ = "0.1.0"
