"""Which device to train on, and a one-look summary of the environment for the labs."""
from __future__ import annotations

import platform
import sys

import torch

from .scale import current_scale


def pick_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
