"""What a run tells its user at the end (tables, where its files are): through logging when a handler shows
INFO, as in a Hydra run (the console and the run's main.log), else printed, so it appears once either way."""

from __future__ import annotations

import logging

log = logging.getLogger("raft")


def show(text: str) -> None:
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(text)
    else:
        print(f"\n{text}")
