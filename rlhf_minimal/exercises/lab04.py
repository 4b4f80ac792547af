"""Lab 04 exercises: the pairwise loss, weighting each prompt equally, and the reward read at the
last real token. Questions 1 and 3 are pieces of the lab's own reward-model run
(:class:`rlhf_minimal.reward.RewardPieces`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reward import pairwise_loss, reward_at_last_token
from . import Incorrect, Question, expect_close


def _reference_loss(chosen: torch.Tensor, rejected: torch.Tensor, weights=None) -> torch.Tensor:
    losses = -F.logsigmoid(chosen - rejected)
    return losses.mean() if weights is None else (weights * losses).sum() / weights.sum()


def _check_loss(fn) -> None:
    g = torch.Generator().manual_seed(4)
    chosen, rejected = torch.randn(16, generator=g), torch.randn(16, generator=g)
    got = fn(chosen, rejected)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise Incorrect("return the mean loss as a 0-dim tensor.")
    if abs(got.item() - _reference_loss(rejected, chosen).item()) < 1e-6:
        raise Incorrect("the sign is flipped: the loss should be small when the chosen response "
                        "has the larger reward, so use r_chosen - r_rejected.")
    expect_close(got, _reference_loss(chosen, rejected), "the loss on random rewards")
    far = fn(torch.tensor([-60.0, 0.0]), torch.tensor([60.0, 0.0]))
    if not torch.isfinite(far):
        raise Incorrect("the loss is infinite when the model is confidently wrong (gap -120): "
                        "log(sigmoid(x)) underflows. Use F.logsigmoid.")
    expect_close(far, (120.0 + 0.6931471805599453) / 2, "the loss with a gap of -120")
    weights = torch.rand(16, generator=g) + 0.1
    try:
        weighted = fn(chosen, rejected, weights=weights)
    except TypeError as err:
        raise Incorrect(f"your function does not take weights= ({err}): add the argument "
                        "`weights=None` and, when it is given, return sum(w * loss) / sum(w).") from None
    if isinstance(weighted, torch.Tensor) and weighted.dim() == 0 and abs(
            weighted.item() - (weights * -F.logsigmoid(chosen - rejected)).sum().item()) < 1e-5:
        raise Incorrect("with weights you returned sum(w * loss); divide by sum(w), so that the loss "
                        "is a weighted mean.")
    expect_close(weighted, _reference_loss(chosen, rejected, weights), "the weighted loss")


q1 = Question(
    "Lab 04, question 1 (the pairwise loss)",
    _check_loss,
    hints=["eq-rm-loss: -log sigmoid(r_chosen - r_rejected), averaged; with weights, "
           "sum(w * loss) / sum(w).",
           "`F.logsigmoid` computes log(sigmoid(x)) without underflow."],
    solution="""
import torch.nn.functional as F

def pairwise_loss(chosen_rewards, rejected_rewards, weights=None):
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    if weights is None:
        return losses.mean()
    return (weights * losses).sum() / weights.sum()
""",
    reference=_reference_loss,
    piece=pairwise_loss, piece_name="pairwise_loss (rlhf_minimal.reward)",
)


def _reference_prompt_weighted(per_prompt: list) -> torch.Tensor:
    return torch.stack([_reference_loss(c, r) for c, r in per_prompt]).mean()


def _check_prompt_weighted(fn) -> None:
    g = torch.Generator().manual_seed(5)
    per_prompt = [(torch.randn(n, generator=g), torch.randn(n, generator=g)) for n in (1, 6, 36, 3)]
    got = fn(per_prompt)
    pooled = _reference_loss(torch.cat([c for c, _ in per_prompt]), torch.cat([r for _, r in per_prompt]))
    if isinstance(got, torch.Tensor) and got.dim() == 0 and abs(got.item() - pooled.item()) < 1e-6:
        raise Incorrect("you averaged over all pairs together, so the prompt with 36 pairs counts 36 "
                        "times as much as the prompt with one. Average within each prompt first.")
    per_prompt_losses = [_reference_loss(c, r) for c, r in per_prompt]
    summed_pairs = torch.stack([-F.logsigmoid(c - r).sum() for c, r in per_prompt])
    wrong = [
        (torch.stack(per_prompt_losses).sum(),
         "you summed the prompts' losses; average them, so the loss does not grow with the number of prompts."),
        (summed_pairs.mean(),
         ("within each prompt you summed the pairs' losses, so a prompt with 36 pairs still weighs 36 times "
          "as much as one with a single pair: take the mean within each prompt, then over prompts.")),
    ]
    for value, message in wrong:
        if isinstance(got, torch.Tensor) and got.dim() == 0 and abs(got.item() - value.item()) < 1e-5:
            raise Incorrect(message)
    expect_close(got, _reference_prompt_weighted(per_prompt), "the batch loss")


q2 = Question(
    "Lab 04, question 2 (each prompt weighs the same)",
    _check_prompt_weighted,
    hints=["Compute the pairwise loss of each prompt's pairs, then average those numbers.",
           "`torch.stack([...]).mean()` averages a list of 0-dim tensors."],
    solution="""
import torch
import torch.nn.functional as F

def prompt_weighted_loss(per_prompt):
    losses = [-F.logsigmoid(c - r).mean() for c, r in per_prompt]
    return torch.stack(losses).mean()
""",
    reference=_reference_prompt_weighted,
)


def _reference_read_out(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """An independent loop: the value at the largest index whose mask is 1, row by row."""
    return torch.stack([values[b, max(t for t in range(mask.size(1)) if mask[b, t])]
                        for b in range(values.size(0))])


def _check_read_out(fn) -> None:
    g = torch.Generator().manual_seed(13)
    values = torch.randn(4, 7, generator=g)
    right = torch.tensor([[1] * n + [0] * (7 - n) for n in (7, 3, 1, 5)])
    got = fn(values.clone(), right.clone())
    if not isinstance(got, torch.Tensor) or got.shape != (4,):
        raise Incorrect("return one reward per sequence: a tensor of shape [B] (here [4]).")
    if torch.allclose(got, values[:, -1]):
        raise Incorrect("you read the last column, which is padding for three of the four rows: read "
                        "each row at its own last real token (where the mask is last 1).")
    if torch.allclose(got, values[:, 0]):
        raise Incorrect("you read the first token; the reward is read after the model has seen the "
                        "whole response, at the last real token.")
    expect_close(got, _reference_read_out(values, right), "the rewards of right-padded rows")
    left = right.flip(-1)
    got = fn(values.clone(), left.clone())
    if not torch.allclose(got, _reference_read_out(values, left)):
        raise Incorrect("with left padding (the mask 0 first, then 1s) your read-out is wrong: "
                        "mask.sum() - 1 is the last real token only with right padding. Find the "
                        "last position whose mask is 1, for example from mask.flip(-1).argmax(-1).")


q3 = Question(
    "Lab 04, question 3 (the reward at the last real token)",
    _check_read_out,
    hints=["The scalar head gives a value at every position; the reward is the one at the last "
           "position whose mask is 1. `values.gather(1, index[:, None]).squeeze(1)` picks one per row.",
           ("`mask.flip(-1).argmax(-1)` counts the positions after the last 1 (argmax returns the first "
            "maximum), so the last real token is at T - 1 minus that; it works for right and left padding.")],
    solution="""
def reward_at_last_token(values, mask):
    width = mask.size(1)
    last = width - 1 - mask.flip(-1).long().argmax(-1)
    return values.gather(1, last[:, None]).squeeze(1)
""",
    reference=_reference_read_out,
    piece=reward_at_last_token, piece_name="reward_at_last_token (rlhf_minimal.reward)",
)
