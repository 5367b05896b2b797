"""Metrics: diversity (GEM-metrics definitions), reference perplexity, reward summaries of a stage."""
