"""Evaluation metrics: diversity (GEM-metrics definitions) and reference perplexity."""
