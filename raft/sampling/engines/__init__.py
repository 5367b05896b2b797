"""Sampling engines that run outside raft's process (vLLM)."""
