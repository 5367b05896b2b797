"""The `raft` command: the Hydra entry point, `raft init`, config resolvers and up-front checks."""
