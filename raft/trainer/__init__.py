"""The `trainer` group: one fit path for every stage (Lightning Trainer, completion guard, weights, optimiser state)."""
