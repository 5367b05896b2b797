"""`raft` console command: `raft report PATH` writes tables and plots, `raft init [FOLDER]` a starter project of
your own; anything else is a Hydra run."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        from raft.report import main as report_main

        sys.exit(report_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "init":
        from raft.cli.starter import main as init_main

        sys.exit(init_main(sys.argv[2:]))
    from raft.cli.main import hydra_main

    hydra_main()
