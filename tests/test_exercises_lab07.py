"""Lab 07 exercises: planted wrong answers fail, each with the message that names its mistake.
Question 1's reference is the package's own position_ids; question 2's is checked against TRL's
GRPO advantage.

The cases are registered in ``PLANTED``; tests/test_exercises.py runs them and its guard counts them."""
from collections import namedtuple

import pytest
import torch


Planted = namedtuple("Planted", "question mistake answer words")


def _group(center=True, scale=True, unbiased=True, whole_batch=False):
    def advantages(rewards):
        dims = {} if whole_batch else {"dim": 1, "keepdim": True}
        centred = rewards - rewards.mean(**dims) if center else rewards
        if not scale:
            return centred
        return centred / (rewards.std(unbiased=unbiased, **dims) + 1e-4)
    return advantages


PLANTED = [
    # lab 07, q1: positions counted over real tokens
    Planted("lab07.q1", "GPT-2's positions from the start of the row",
            lambda m: torch.arange(m.size(1)).expand_as(m).clone(), ["GPT-2's own positions"]),
    Planted("lab07.q1", "no clamp: pads at -1", lambda m: m.cumsum(-1) - 1, ["-1", "clamp"]),
    Planted("lab07.q1", "counted from 1", lambda m: m.cumsum(-1), ["position 0"]),
    Planted("lab07.q1", "float positions", lambda m: (m.cumsum(-1) - 1).clamp(min=0).float(), ["integers"]),
    Planted("lab07.q1", "one position per row", lambda m: m.sum(-1) - 1, ["one position per token"]),
    # lab 07, q2: GRPO's group-normalised advantage
    Planted("lab07.q2", "normalised over the whole batch", _group(whole_batch=True), ["whole batch"]),
    Planted("lab07.q2", "no division by the standard deviation", _group(scale=False), ["did not divide"]),
    Planted("lab07.q2", "population standard deviation", _group(unbiased=False), ["population", "G - 1"]),
    Planted("lab07.q2", "std without the 1e-4: NaN on equal rewards",
            lambda r: (r - r.mean(1, keepdim=True)) / r.std(1, keepdim=True), ["not finite", "1e-4"]),
    Planted("lab07.q2", "raw rewards, no baseline", _group(center=False, scale=False), ["the advantages"]),
]


def test_lab07_q2_reference_is_trls_grpo_advantage():
    """The reference against TRL's own pieces: its nanstd (Bessel-corrected) and its 1e-4."""
    nanstd = pytest.importorskip("trl.trainer.utils").nanstd
    from rlhf_minimal.exercises.lab07 import _reference_group_advantages

    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(6, 4, generator=generator)
    rewards[2] = 0.5  # a prompt whose answers all got the same reward
    flat, G = rewards.flatten(), rewards.size(1)
    mean = flat.view(-1, G).mean(dim=1).repeat_interleave(G)
    std = nanstd(flat.view(-1, G), dim=1).repeat_interleave(G)
    trl_style = (flat - mean) / (std + 1e-4)
    torch.testing.assert_close(_reference_group_advantages(rewards).flatten(), trl_style)
    assert torch.all(_reference_group_advantages(rewards)[2] == 0)
