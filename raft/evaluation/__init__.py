"""The `evaluator` and `monitor` groups: held-out evaluation, its cache, metrics and the reward-hacking monitor."""
