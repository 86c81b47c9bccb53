"""Data-parallel pre-training with PyTorch's own distributed package, launched by ``torchrun``.

``torchrun --nproc_per_node N -m s3rec pretrain ...`` (or across machines with torchrun's rendezvous
flags) starts N processes ("ranks"). Every rank walks the same random permutation of the instances in
batches of ``batch_size``; rank r takes the instances r, r + N, r + 2N, ... of each batch, computes
the summed losses of its share, and the ranks add their gradients (an all-reduce of one flat buffer
per batch, after a small one saying which parameters have gradients) before the same Adam step on
every rank. The losses are sums, so that is the gradient of the whole batch, exactly as in one
process.

Not wrapped in ``DistributedDataParallel``: its gradient hooks follow ``forward()``, and the four
objectives are computed by ``losses()``; an explicit all-reduce per step does the same summation.

What differs from one process is only the randomness: each rank corrupts its share and draws its
dropout masks from its own streams, seeded from (seed, epoch, rank) at the start of every epoch, so
a resumed distributed run continues exactly (with the same number of ranks: ``checkpoint.pt``
records it, and ``--resume`` with another number refuses, since it would change the draws; a
checkpoint written before it was recorded, 2026-11-28, counts as one process's). Rank 0 alone logs
and writes files; every rank reads the data and, on ``--resume``, ``checkpoint.pt``, so ranks on
several machines need a shared file system. CPU ranks use the gloo backend, CUDA ranks NCCL (one GPU per rank: ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: ``World()`` is a plain one-process run."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def share(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's instances of a batch: every ``size``-th, from position ``rank``."""
        return idx[self.rank :: self.size] if self.active else idx

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        """The ranks' values added up, key by key (every rank gets the sums)."""
        if not self.active or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=_device())
        dist.all_reduce(t)
        return dict(zip(values, t.tolist()))

    def sum_gradients(self, params: list[torch.Tensor]) -> bool:
        """Add the ranks' gradients in place (two all-reduces: which parameters have gradients, then
        the gradients in one flat buffer); returns whether the sums are finite, the same on every
        rank (True in one process). A parameter no rank gave a gradient keeps none (Adam skips it,
        as in one process); one that only some ranks reached counts zero on the others."""
        if not self.active:
            return True
        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        chosen = [p for p, h in zip(params, has.tolist()) if h]
        if not chosen:
            return True
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in chosen])
        dist.all_reduce(flat)
        offset = 0
        for p in chosen:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n
        return bool(torch.isfinite(flat).all())

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's weights on every rank (they are built from the same seed; this makes sure)."""
        if self.active:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, 0)

    def gather_shares(self, share: torch.Tensor, n: int) -> torch.Tensor:
        """The whole ``[n, ...]`` tensor of which each rank holds its :meth:`share` of the rows (every
        rank gets it; ``share`` itself in one process)."""
        if not self.active:
            return share
        width = (n + self.size - 1) // self.size  # the largest share; the others padded to it
        padded = torch.zeros((width, *share.shape[1:]), dtype=share.dtype, device=_device())
        padded[: len(share)] = share.to(padded.device)
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        out = share.new_empty((n, *share.shape[1:]))
        for r, part in enumerate(parts):
            rows = torch.arange(r, n, self.size)
            out[rows] = part[: len(rows)].to(out.device)
        return out

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """Reseed this rank's dropout (torch's default generator) from (seed, epoch, rank): the draws of
        a distributed fine-tuning epoch, the same when it is resumed."""
        state = np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1, dtype=np.uint64)
        torch.manual_seed(int(state[0]) >> 1)

    def epoch_generator(self, seed: int, epoch: int) -> torch.Generator:
        """This rank's stream for the epoch's corruption; also reseeds its dropout masks."""
        state = np.random.SeedSequence([seed, epoch, self.rank]).generate_state(2, dtype=np.uint64)
        torch.manual_seed(int(state[1]) >> 1)
        return torch.Generator().manual_seed(int(state[0]) >> 1)


def _device() -> str:
    return "cuda" if dist.get_backend() == "nccl" else "cpu"


def from_env(device: str) -> tuple[World, str]:
    """The world torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` ...), its process group
    started, and this rank's device (``cuda`` becomes ``cuda:LOCAL_RANK``); ``(World(), device)``
    when the process was not launched that way."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size()), device


def close(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()
