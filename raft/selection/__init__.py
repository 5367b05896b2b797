"""The `selector` and `filters` groups: which scored samples a stage fine-tunes on."""
