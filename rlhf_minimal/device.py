"""Where a run starts: the device, the switches that go with it, and what the environment asks.

``run_settings`` is the one place that reads ``RLHF_PRECISION`` and ``RLHF_CUDA_GRAPHS``; the
stages call it once and pass what it says down to the training loops. ``pick_device`` chooses the
device and applies the device-wide switches (none on the CPU).
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

import torch

from .scale import current_scale

PRECISIONS = ("fp32", "bf16", "fp16")


def pick_device(device=None) -> torch.device:
    """``device`` (a name or a ``torch.device``), else CUDA when available, else the CPU.

    On a CUDA device it switches cuDNN attention off for the process: on recent GPUs torch tries
    cuDNN first for half-precision attention with a mask, and cuDNN builds an execution plan for
    every new input shape (a tenth of a second to a second each). Our batches change shape at
    almost every step: on an H200 the reward model's 67 steps took 7.5 s, where a step of a
    repeated shape takes 13 ms. The other attention kernels need no plan."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
    return device


@dataclass(frozen=True)
class RunSettings:
    device: torch.device
    precision: str = ""        # RLHF_PRECISION: fp32, bf16 or fp16 on a GPU; "": the device's own
    cuda_graphs: bool = False  # RLHF_CUDA_GRAPHS=1: replay steps from CUDA graphs (CUDA only)


def run_settings(device=None) -> RunSettings:
    """The device (:func:`pick_device`) and the environment's ``RLHF_PRECISION`` and
    ``RLHF_CUDA_GRAPHS``, checked: an unknown value is an error that says what to set."""
    device = pick_device(device)
    precision = os.environ.get("RLHF_PRECISION", "").strip().lower()
    if precision and precision not in PRECISIONS:
        raise ValueError(f"RLHF_PRECISION={precision!r} is not a precision; use one of "
                         f"{', '.join(PRECISIONS)} or leave it unset to let the device choose")
    graphs = os.environ.get("RLHF_CUDA_GRAPHS", "").strip()
    if graphs not in ("", "0", "1"):
        raise ValueError(f"RLHF_CUDA_GRAPHS={graphs!r}: use 1 to record training steps as CUDA graphs, "
                         "or 0 (or leave it unset) to run them eagerly")
    return RunSettings(device, precision, graphs == "1" and device.type == "cuda")


def describe_environment() -> dict:
    """Python, torch, device and scale, as a dict (the labs print it)."""
    import importlib.metadata as md

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "in_colab": "google.colab" in sys.modules,
        "torch": torch.__version__,
        "device": str(pick_device()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
        "cpu_threads": torch.get_num_threads(),
        "scale": current_scale(),
    }
    for package in ("rlhf_minimal", "transformers", "datasets", "trl", "ipywidgets"):
        try:
            info[package] = md.version(package)
        except md.PackageNotFoundError:
            info[package] = "not installed"
    return info
