"""raft's own checks that stop a run part-way, as opposed to bad settings (refused before any model loads) and
errors in a user's code (raised as they are, with their traceback).

The command line reports a `StageError` in one line: what stopped, and that the stages finished so far are kept,
so the same command resumes once the cause is fixed.
"""

from __future__ import annotations


class StageError(ValueError):
    """A stage cannot go on (a reward's non-finite or missing scores, nothing left to fine-tune on, a damaged
    checkpoint that cannot be redone)."""
