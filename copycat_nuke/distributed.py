"""Distributed training on PyTorch's own engine: torchrun, DistributedDataParallel, gloo or NCCL.

One network is trained by several processes (GPUs, or machines). Each process (rank) samples its own
patches (the sampler is seeded by ``(seed, rank)``), gradients are averaged across ranks after every
backward pass (so the **global batch is batch_size × world size**), and rank 0 alone writes checkpoints,
contact sheets, logs and events. Stop requests and the reported loss are exchanged every step, so all
ranks stop at the same step; a rank that dies makes the others fail with a clear error instead of hanging.

The process group is configured by torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) or by Nuke's CopyCat farm variables, accepted as aliases so existing
set-ups carry over: ``COPYCAT_MAIN_ADDR``, ``COPYCAT_MAIN_PORT``, ``COPYCAT_RANK``,
``COPYCAT_WORLD_SIZE`` and ``COPYCAT_SYNC_INTERVAL`` (average the weights every N steps instead of the
gradients every step: fewer exchanges on slow networks, at some cost in quality).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from copycat_nuke.errors import ConfigError, TrainingError

#: Nuke's CopyCat variable → torchrun's.
ALIASES = {
    "COPYCAT_MAIN_ADDR": "MASTER_ADDR",
    "COPYCAT_MAIN_PORT": "MASTER_PORT",
    "COPYCAT_RANK": "RANK",
    "COPYCAT_WORLD_SIZE": "WORLD_SIZE",
}
#: Seconds a rank waits in a collective before giving up (``COPYCAT_TIMEOUT`` overrides).
DEFAULT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a distributed run (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sync_interval: int = 1
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files and publishes events."""
        return self.rank == 0


def _integer(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} must be a whole number") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name}={value} must be at least {minimum}")
    return value


def context_from_environment(environ: Mapping[str, str] = os.environ) -> DistributedContext:
    """Read the run's place from torchrun's variables, falling back to Nuke's ``COPYCAT_*`` aliases."""
    merged = dict(environ)
    for alias, name in ALIASES.items():
        if not merged.get(name) and merged.get(alias):
            merged[name] = merged[alias]
    world_size = _integer(merged, "WORLD_SIZE", 1, 1)
    rank = _integer(merged, "RANK", 0, 0)
    if rank >= world_size:
        raise ConfigError(f"RANK/COPYCAT_RANK={rank} must be below WORLD_SIZE/COPYCAT_WORLD_SIZE={world_size}")
    if world_size > 1 and not merged.get("MASTER_ADDR"):
        raise ConfigError(
            f"a distributed run ({world_size} processes) needs the main node's address: set MASTER_ADDR "
            "(or COPYCAT_MAIN_ADDR) and MASTER_PORT (or COPYCAT_MAIN_PORT), or launch with torchrun"
        )
    return DistributedContext(
        rank=rank,
        world_size=world_size,
        local_rank=_integer(merged, "LOCAL_RANK", rank if world_size > 1 else 0, 0),
        sync_interval=_integer(merged, "COPYCAT_SYNC_INTERVAL", 1, 1),
        timeout_seconds=_integer(merged, "COPYCAT_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, 1),
    )


def start(context: DistributedContext, device: torch.device) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA). Does nothing for a single process."""
    if not context.enabled or dist.is_initialized():
        return
    for alias, name in ALIASES.items():
        if not os.environ.get(name) and os.environ.get(alias):
            os.environ[name] = os.environ[alias]
    os.environ.setdefault("MASTER_PORT", "29500")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            backend,
            rank=context.rank,
            world_size=context.world_size,
            timeout=timedelta(seconds=context.timeout_seconds),
        )
    except Exception as error:
        raise TrainingError(
            f"rank {context.rank} of {context.world_size} could not join the training group at "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within {context.timeout_seconds} s "
            f"({error}); check the address, the port and that every rank was started"
        ) from None


def finish_together(context: DistributedContext) -> None:
    """Wait until every rank got here (rank 0 has written the model), so no rank tears its connections
    down while another still works: the ranks of a finished run leave together."""
    if not context.enabled:
        return
    with collective(context):
        dist.barrier()


def stop(context: DistributedContext) -> None:
    """Leave the process group (safe to call when none was joined).

    Collective work objects still referenced when the interpreter shuts down are freed by gloo's threads
    without the interpreter (a SIGABRT at exit): collect them first, while the group still exists."""
    if context.enabled and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def local_device(context: DistributedContext, device: torch.device) -> torch.device:
    """One GPU per rank on a node: ``cuda:LOCAL_RANK``; CPUs are shared."""
    if device.type == "cuda" and context.enabled:
        return torch.device("cuda", context.local_rank)
    return device


def _lost_contact(context: DistributedContext, error: BaseException) -> TrainingError:
    return TrainingError(
        f"rank {context.rank} lost contact with the other training processes ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else 'no detail'}); another rank stopped or crashed: "
        "see its log. Resume from the last checkpoint once every rank can run"
    )


@contextlib.contextmanager
def collective(context: DistributedContext) -> Iterator[None]:
    """Turn a dead peer during a collective (e.g. DDP's gradient all-reduce) into a clear TrainingError."""
    if not context.enabled:
        yield
        return
    try:
        yield
    except RuntimeError as error:  # gloo/NCCL report a dead peer as RuntimeError or DistBackendError
        raise _lost_contact(context, error) from None


def any_rank_stopping(context: DistributedContext, stop_requested: bool, device: torch.device) -> bool:
    """Whether any rank was asked to stop; every rank gets the same answer, so all stop at the same step."""
    if not context.enabled:
        return stop_requested
    flag = torch.tensor([1.0 if stop_requested else 0.0], device=device)
    with collective(context):
        dist.all_reduce(flag)
    return bool(flag.item() > 0)


def mean_over_ranks(context: DistributedContext, value: float, device: torch.device) -> float:
    """The mean of a number (the step's loss) over all ranks."""
    if not context.enabled:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    with collective(context):
        dist.all_reduce(total)
    return float(total.item()) / context.world_size


def min_over_ranks(context: DistributedContext, value: int, device: torch.device) -> int:
    """The smallest of a whole number over all ranks (e.g. the batch size every rank can afford)."""
    if not context.enabled:
        return value
    smallest = torch.tensor([value], dtype=torch.int64, device=device)
    with collective(context):
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    return int(smallest.item())


def average_parameters(context: DistributedContext, model: nn.Module) -> None:
    """Replace every rank's weights by their mean (used every ``sync_interval`` steps)."""
    if not context.enabled:
        return
    with collective(context), torch.no_grad():
        for parameter in model.parameters():
            dist.all_reduce(parameter.data)
            parameter.data /= context.world_size


def broadcast_parameters(context: DistributedContext, model: nn.Module) -> None:
    """Give every rank rank 0's weights (so runs start identical)."""
    if not context.enabled:
        return
    with collective(context), torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def wrap(context: DistributedContext, module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` when gradients are synced every step; else as is."""
    if not context.enabled or context.sync_interval > 1:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
