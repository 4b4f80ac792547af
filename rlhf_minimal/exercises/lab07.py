"""Lab 07 exercises: the positions that make an exported model agree with ours, and GRPO's
group-normalised advantage (the baseline that replaces a value function in TRL's GRPOTrainer)."""
from __future__ import annotations

import torch

from ..model import position_ids
from . import Incorrect, Question, diagnose_group_advantages, expect_close


def _check_course_positions(fn) -> None:
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    got = fn(left.clone())
    if not isinstance(got, torch.Tensor):
        raise Incorrect(f"return a tensor of positions, not {type(got).__name__}.")
    if got.shape != left.shape:
        raise Incorrect(f"return one position per token, shape {tuple(left.shape)}; got {tuple(got.shape)}.")
    if got.is_floating_point():
        raise Incorrect("positions index the position-embedding table: return integers (for example "
                        "with .long()), not floats.")
    if torch.equal(got, torch.arange(5).expand(3, 5)):
        raise Incorrect("those are GPT-2's own positions, counted from the start of the row, padding "
                        "included: a left-padded prompt would then start at its number of pads. Count "
                        "the real tokens before each token instead.")
    if torch.equal(got, left.cumsum(-1) - 1):
        raise Incorrect("the pads before the first real token get position -1, which is no row of an "
                        "embedding table: clamp the positions at 0.")
    if torch.equal(got, left.cumsum(-1)):
        raise Incorrect("the first real token must get position 0, as in training (it got 1): subtract 1 "
                        "from the running count of real tokens.")
    expect_close(got, position_ids(left), "the positions of a left-padded batch")
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    expect_close(fn(right.clone()), torch.tensor([[0, 1, 2, 2, 2], [0, 0, 0, 0, 0]]),
                 "the positions of a right-padded batch (pads after the text do not matter, but "
                 "the real tokens still count from 0)")
    generator = torch.Generator().manual_seed(7)
    lengths = torch.randint(1, 9, (6,), generator=generator)
    mask = (torch.arange(8)[None, :] >= 8 - lengths[:, None]).long()
    expect_close(fn(mask.clone()), position_ids(mask), "the positions of a random left-padded batch")


q1 = Question(
    "Lab 07, question 1 (our positions for an exported model)",
    _check_course_positions,
    hints=["Our GPT gives each token the number of real tokens before it, so the first real token of a "
           "left-padded row is at position 0 however many pads come first.",
           "A running count of the mask, `mask.cumsum(-1)`, is 1 at the first real token. Shift it and "
           "keep the pads from going negative."],
    solution="""
def course_positions(mask):
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
""",
    reference=position_ids,
    correct_message="pass these as position_ids and GPT-2 computes our logits (rlhf_minimal.model.position_ids).",
)


def _reference_group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # n - 1 in the denominator, as TRL's nanstd
    return (rewards - mean) / (std + eps)


def _check_group_advantages(fn) -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    got = fn(rewards.clone())
    if not isinstance(got, torch.Tensor):
        raise Incorrect(f"return a tensor of advantages, not {type(got).__name__}.")
    if got.shape != rewards.shape:
        raise Incorrect(f"return one advantage per answer, shape {tuple(rewards.shape)}; got {tuple(got.shape)}.")
    diagnose_group_advantages(got, rewards)
    expect_close(got, _reference_group_advantages(rewards), "the advantages of a hand example")
    expect_close(got[2], torch.zeros(4), "the advantages of a prompt whose answers all got the same reward")
    generator = torch.Generator().manual_seed(3)
    rewards = torch.randn(5, 8, generator=generator)
    expect_close(fn(rewards.clone()), _reference_group_advantages(rewards), "the advantages of random rewards, G = 8")


q2 = Question(
    "Lab 07, question 2 (GRPO's group-normalised advantage)",
    _check_group_advantages,
    hints=["Row i holds the rewards of the G answers to prompt i. Each answer's advantage compares it with "
           "the other answers to the same prompt: no value function is needed.",
           "Reduce over dim=1 with keepdim=True: (rewards - mean) / (std + 1e-4), with torch.std's default "
           "(n - 1) denominator."],
    solution="""
def group_advantages(rewards):
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + 1e-4)
""",
    reference=_reference_group_advantages,
    correct_message="every token of an answer gets its answer's advantage; compare GAE's per-token credit in lab 5.",
)
