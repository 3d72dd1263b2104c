"""Where and in what precision the network runs, decided once per job and passed down.

Order of preference: CUDA → Apple MPS → CPU. Mixed precision (autocast) where the device has fast
low-precision maths: bf16 on CUDA GPUs that support it (fp16 otherwise), bf16 on CPUs with native
AVX-512 bf16 (measured here: Medium net, batch 4×256², channels_last + bf16 2.35 s/step vs 6.23 s fp32,
same loss after 60 steps). Weights and optimizer state stay fp32 either way.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from copycat_nuke.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """A device and the precision to run on it."""

    device: torch.device
    autocast_dtype: Optional[torch.dtype]  #: None: plain fp32
    channels_last: bool

    @property
    def precision(self) -> str:
        """ "fp32", "bf16" or "fp16", for logs, events and manifests."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def describe(self) -> str:
        """e.g. "cuda:0 (NVIDIA H100, bf16)" or "cpu (2 threads, bf16)"."""
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        elif self.device.type == "cpu":
            name = f"{torch.get_num_threads()} threads"
        else:
            name = self.device.type
        return f"{self.device} ({name}, {self.precision})"

    def place_model(self, model: nn.Module) -> nn.Module:
        """Move a network to the device, in channels_last where that is the faster layout."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
        return model

    def place(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move an N×C×H×W batch to the device, in the network's memory layout."""
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.contiguous(memory_format=torch.channels_last) if self.channels_last else tensor

    def autocast(self) -> torch.autocast:
        """The autocast context for forward passes (disabled for fp32)."""
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )


def describe_hardware(device: Optional[torch.device] = None) -> str:
    """The machine in words for a manifest, e.g. "AMD EPYC, 2 cores, x86_64 Linux" (+ the GPU's name)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count() or '?'} cores, {platform.machine()} {platform.system()}"
    if device is not None and device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 maths (AVX-512 bf16 or AMX), which makes bf16 autocast pay."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a named device must exist or :class:`ConfigError`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available; use --device auto or cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Decide device, autocast dtype and memory format for a job.

    ``precision``: auto (the fastest that trains as well: bf16/fp16 on GPU, bf16 on CPUs with native
    bf16, else fp32), fp32, bf16 or fp16.
    """
    dev = resolve_device(device)
    dtype: Optional[torch.dtype]
    if precision == "auto":
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif dev.type == "cpu" and cpu_has_fast_bf16():
            dtype = torch.bfloat16
        else:
            dtype = None
    elif precision == "fp32":
        dtype = None
    elif precision == "bf16":
        dtype = torch.bfloat16
    elif precision == "fp16":
        if dev.type == "cpu":
            raise ConfigError("precision fp16 is for GPUs; on the CPU use bf16 or fp32")
        dtype = torch.float16
    else:
        raise ConfigError(f"unknown precision {precision!r}: use auto, fp32, bf16 or fp16")
    # channels_last: faster on CPU (docs/decisions.md, "channels_last on the CPU"), the tensor-core layout on GPU.
    return Runtime(device=dev, autocast_dtype=dtype, channels_last=dev.type in ("cpu", "cuda"))
