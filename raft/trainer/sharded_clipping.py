"""Gradient-norm clipping that also works when the strategy shards the model (FSDP).

Lightning's FSDP precision plugin refuses `gradient_clip_val` with norm clipping, and raft's trainer clips at 1.0
by default, so every `trainer=fsdp` fit stopped at its first step. The FSDP wrapper itself clips its sharded
gradients by their global norm; a module with this hook asks it to, and clips as before everywhere else.
"""

from __future__ import annotations


class ShardedClipping:
    """Mix into a LightningModule (before `pl.LightningModule`)."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = self.trainer.model  # FSDP's root module under FSDP; the module itself otherwise
        sharded = isinstance(wrapped, FullyShardedDataParallel)
        if gradient_clip_val and sharded and gradient_clip_algorithm in (None, "norm"):
            wrapped.clip_grad_norm_(gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
