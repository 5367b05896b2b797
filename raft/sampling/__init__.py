"""The `sampler` group: how policies draw K samples per prompt, the engines that draw them, and stage files."""
