"""The scale switch: one environment variable, ``RLHF_SCALE``, read here and nowhere else.

``ci``  tiny: every lab in about a minute on 2 CPU cores (nbval in CI).
``cpu`` a laptop: the three stages end to end in under ten minutes on 2 cores, with the course's
        results; on a GPU it runs in a minute or two.
``gpu`` larger models and data for a Colab GPU; its results under the current reward-model data
        and PPO settings have not been measured yet, so no default picks it.

Unset, the scale is ``cpu``, on a GPU as well: the default is a scale whose gains are measured.
Run ``python -m rlhf_minimal.scale`` to print the scale in use (or the error).
"""
from __future__ import annotations

import os

ENV_VAR = "RLHF_SCALE"
SCALES = ("ci", "cpu", "gpu")


class ScaleError(ValueError):
    """An unknown scale name."""


def check_scale(name: str) -> str:
    """Return ``name`` if it is a valid scale, else raise :class:`ScaleError` listing the valid ones."""
    if name not in SCALES:
        raise ScaleError(
            f"unknown scale {name!r}: {ENV_VAR} (or the scale argument) must be one of "
            f"{', '.join(SCALES)}. Example: {ENV_VAR}=cpu"
        )
    return name


def default_scale() -> str:
    """``cpu``, with or without CUDA: the scale whose gains over SFT are measured (README)."""
    return "cpu"


def current_scale(scale: str | None = None) -> str:
    """The scale to use: the argument if given, else ``$RLHF_SCALE``, else :func:`default_scale`."""
    if scale is not None:
        return check_scale(scale)
    value = os.environ.get(ENV_VAR, "").strip()
    return check_scale(value) if value else default_scale()


def _main() -> int:
    try:
        print(f"{ENV_VAR} scale in use: {current_scale()}")
    except ScaleError as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
