"""The machine a result was computed on: CPU model, thread counts, torch build, device.

Why it is recorded: snnrobust seeds every random choice, so the same seed gives identical
numbers *on the same machine type, thread count and torch build*. Floating-point reductions
(convolutions, matrix products, sums) are ordered differently by other CPU instruction sets
(AVX2 vs AVX-512 kernels), other thread counts (how a reduction is split) and other torch,
MKL/oneDNN or CUDA versions; the rounding differences grow through training, so a model trained
elsewhere may differ by a point of accuracy (see the README). Every evaluation result and
every study records :func:`machine_info`, so two numbers can be told apart by where they came from.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any, Optional

import torch


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name (``model name`` of /proc/cpuinfo on Linux), else what the
    platform module knows, else "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def torch_build() -> dict:
    """The torch build: version, git commit, CUDA/cuDNN versions (None on a CPU build),
    oneDNN and OpenMP availability and the CPU kernel level torch dispatches to."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    try:
        capability = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX2", "AVX512"
    except (AttributeError, RuntimeError):
        capability = None
    return {"version": str(torch.__version__), "git": getattr(torch.version, "git_version", None),
            "cuda": torch.version.cuda, "cudnn": cudnn, "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "openmp": bool(torch.backends.openmp.is_available()), "cpu_capability": capability}


def machine_info(device: Any = None) -> dict:
    """What a result depends on beyond its seed: ``cpu`` (model name), ``cpu_count`` (logical
    CPUs), ``threads`` / ``interop_threads`` (torch's intra- and inter-op thread pools at call
    time), ``omp_num_threads`` (the environment variable, None when unset), ``torch`` (the build,
    :func:`torch_build`), ``device`` (and ``gpu``: its name on CUDA), ``python`` and ``platform``."""
    dev: Optional[str] = None if device is None else str(device)
    gpu = None
    if dev is not None and dev.startswith("cuda") and torch.cuda.is_available():
        try:
            gpu = torch.cuda.get_device_name(torch.device(dev))
        except (RuntimeError, AssertionError, ValueError):
            gpu = None
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch_build(), "device": dev, "gpu": gpu, "python": platform.python_version(),
            "platform": platform.platform()}


def machine_label(info: dict) -> str:
    """One line for reports: ``Intel Xeon ... (2 CPUs), 2 torch threads, torch 2.13.0 (AVX2), cpu``."""
    if not isinstance(info, dict) or not info:
        return "not recorded"
    t = info.get("torch") if isinstance(info.get("torch"), dict) else {}
    build = str(t.get("version", "?")) + (f" ({t['cpu_capability']})" if t.get("cpu_capability") else "")
    if t.get("cuda"):
        build += f", CUDA {t['cuda']}"
    dev = str(info.get("device") or "?") + (f" ({info['gpu']})" if info.get("gpu") else "")
    return (f"{info.get('cpu', '?')} ({info.get('cpu_count', '?')} CPUs), {info.get('threads', '?')} torch "
            f"threads, torch {build}, device {dev}")
