"""Data-parallel training context: one process per device, as launched by ``torchrun``.

``torchrun --nproc_per_node N -m nacode train ...`` starts N copies of the program with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment; :func:`init_from_env` turns
those into a :class:`Context` (and a process group: NCCL on GPUs, gloo on CPUs). Without
them the context is a single process (world size 1) and never touches
:mod:`torch.distributed`, so every method below is then a cheap no-op.

:func:`shard_bounds` is how a global batch is split: contiguous shards whose sizes differ by
at most one, the larger ones first, so rank 0 always holds a sample of a non-empty batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` ordered samples.

    The first ``n % world_size`` ranks get one sample more; a rank gets none when
    ``n < world_size`` (it must still take part in the step, see
    :func:`nacode.denoise.trainer.train`).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


@dataclass
class Context:
    """Where this process stands among the data-parallel processes.

    Attributes
    ----------
    rank, world_size, local_rank : int
        Global index, number of processes, index on this machine (0, 1, 0 when alone).
    device : str
        The torch device this process computes on (``cuda:<local_rank>`` on GPUs).
    backend : str or None
        ``"nccl"`` or ``"gloo"``; None for a single process.
    owns_group : bool
        Whether :meth:`shutdown` should destroy the process group (this context made it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0: the process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there are several processes (collectives are real)."""
        return self.world_size > 1

    def _device_ids(self) -> dict[str, Any]:
        return {"device_ids": [self.local_rank]} if self.backend == "nccl" else {}

    def barrier(self) -> None:
        """Wait until every process reaches this point."""
        if self.distributed:
            torch.distributed.barrier(**self._device_ids())

    def all_reduce_sum(self, value: torch.Tensor | float) -> torch.Tensor | float:
        """Sum over processes: a tensor in place (and returned), or a float (float64)."""
        if not self.distributed:
            return value
        if torch.is_tensor(value):
            torch.distributed.all_reduce(value)
            return value
        tensor = torch.tensor(float(value), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor)

    def broadcast_tensor(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` on every process with rank ``src``'s (in place)."""
        if self.distributed:
            torch.distributed.broadcast(tensor, src)
        return tensor

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every process (e.g. a stop decision)."""
        if not self.distributed:
            return bool(flag)
        tensor = torch.tensor([int(bool(flag))], dtype=torch.int32, device=self.device)
        torch.distributed.broadcast(tensor, 0)
        return bool(tensor.item())

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's picklable ``obj`` on every process."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, 0)
        return box[0]

    def shutdown(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self.owns_group = False


def init_from_env(device: str, *, timeout_s: float = 3600.0) -> Context:
    """A :class:`Context` from torchrun's environment (a single process without it).

    Parameters
    ----------
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:k"`` is accepted; under torchrun the index is
        replaced by ``LOCAL_RANK``). Chooses the backend: NCCL on cuda, gloo otherwise.
    timeout_s : float
        Collective timeout in seconds; generous because rank 0 may build a data cache while
        the others wait at a barrier.

    Raises
    ------
    ValueError
        If torch lacks distributed support or this machine has fewer GPUs than processes.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed; run without torchrun "
                         "or install a torch with distributed support")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        visible = torch.cuda.device_count()
        if visible == 0:
            raise ValueError("torchrun was asked for device cuda but torch sees no GPU; use "
                             "--device cpu (gloo) or a machine with GPUs")
        if local_rank >= visible:
            raise ValueError(f"torchrun started process {local_rank} on this machine but only "
                             f"{visible} GPU(s) are visible; use --nproc_per_node {visible} "
                             "or fewer")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    owns = not dist.is_initialized()
    if owns:
        extra = {"device_id": torch.device(device)} if cuda else {}
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **extra)
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                   backend=str(dist.get_backend()), owns_group=owns)
