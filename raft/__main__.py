from raft.cli.dispatch import main

main()
