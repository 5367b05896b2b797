"""Online or offline: a W&B run goes online when the user has credentials, however they logged in
(WANDB_API_KEY, the netrc entry `wandb login` wrote, a W&B settings file), as wandb itself finds them; else
offline, kept for `wandb sync`. The user's own choice (the `mode` setting, WANDB_MODE) always stands."""

from __future__ import annotations

import os


def chosen_mode(mode: str | None) -> str | None:
    if mode is not None or os.environ.get("WANDB_MODE"):
        return mode  # None here: wandb reads WANDB_MODE itself
    return "online" if has_credentials() else "offline"


def has_credentials() -> bool:
    """Asks wandb without a prompt and without checking the key with the server."""
    import wandb

    try:
        return wandb.login(prompt=False, verify=False)
    except TypeError:  # a wandb before login's `prompt`: only the environment can tell without asking
        return bool(os.environ.get("WANDB_API_KEY"))
