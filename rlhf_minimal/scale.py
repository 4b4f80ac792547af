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


# --------------------------------------------------------------------------- the presets
# Every setting a scale changes, one table per scale: the fields of each stage's configuration
# that differ from the dataclass's defaults (``WorldConfig``, ``PretrainConfig``, ``SFTConfig``,
# ``RewardConfig``, ``PPOConfig``, ``DPOConfig``), and the network of each model size as
# ``(n_layer, n_head, d_model)``; "medium" is the scale's own model. Each configuration's
# ``preset(scale)`` reads its row here, and its ``__post_init__`` (where it has one) validates it.
PRESETS = {
    "ci": {
        "world": dict(n_entities=16, n_unknown=8, n_docs=2500, sft_per_family=40,
                      rm_per_family=30, rl_per_family=30, eval_per_family=12),
        "sizes": {"small": (1, 2, 32), "medium": (2, 2, 64), "large": (3, 4, 96)},
        "pretrain": dict(steps=200, eval_every=100),
        "sft": dict(epochs=3),
        "reward": dict(epochs=3),
        "ppo": dict(steps=6, prompts_per_step=32, max_new_tokens=32),
        "dpo": dict(epochs=1, max_new_tokens=32),  # max_new_tokens: the ppo row's, for the evaluation
    },
    "cpu": {
        "world": dict(rm_per_family=600, rl_per_family=300),
        "sizes": {"small": (2, 2, 64), "medium": (3, 4, 96), "large": (4, 4, 128)},
        "pretrain": dict(),
        "sft": dict(),
        "reward": dict(),
        # Four responses per prompt with the group baseline, whose own centring leaves the value
        # head only the KL penalty to track, so lambda 1 (Monte-Carlo returns); 120 rollout
        # batches at beta 0.1, from a sweep against the reward model's head alone on seeds 0 and 1
        # (60 to 240 batches, beta 0.05 or 0.1, learning rate 3e-5 or 5e-5;
        # benchmarks/ppo_budget.py): the best sampled on both seeds, within 0.02 of the best
        # greedy, and no task family falling by more than 0.05 greedy on seed 1 (chapter 6).
        "ppo": dict(steps=120, group_size=4, kl_coef=0.1, lam=1.0),
        "dpo": dict(),
    },
    "gpu": {
        "world": dict(n_entities=60, n_unknown=20, n_docs=60000, sft_per_family=400,
                      rm_per_family=300, rl_per_family=300, eval_per_family=100),
        "sizes": {"small": (4, 6, 192), "medium": (6, 6, 384), "large": (8, 8, 512)},
        "pretrain": dict(n_layer=6, n_head=6, d_model=384, window=96, steps=3000, batch_size=64, lr=1e-3),
        "sft": dict(epochs=14, batch_size=64, lr=5e-4),
        "reward": dict(prompts_per_batch=16),
        # four times the earlier cpu rollouts, held closer to SFT (beta 0.3): with beta 0.1 it
        # drifted 2.3 nats and lost to SFT
        "ppo": dict(steps=80, prompts_per_step=128, minibatch_size=32, kl_coef=0.3),
        "dpo": dict(prompts_per_batch=16),
    },
}


def preset(scale: str, stage: str) -> dict:
    """The fields that ``scale`` sets for ``stage`` (a key of :data:`PRESETS`' tables), as a new dict."""
    return dict(PRESETS[check_scale(scale)][stage])


def _main() -> int:
    try:
        print(f"{ENV_VAR} scale in use: {current_scale()}")
    except ScaleError as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
