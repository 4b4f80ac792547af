"""Lab 04 exercises: the pairwise loss, and weighting each prompt equally."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Incorrect, Question, expect_close


def _reference_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


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


q1 = Question(
    "Lab 04, question 1 (the pairwise loss)",
    _check_loss,
    hints=["eq-rm-loss: -log sigmoid(r_chosen - r_rejected), averaged.",
           "`F.logsigmoid` computes log(sigmoid(x)) without underflow."],
    solution="""
import torch.nn.functional as F

def pairwise_loss(chosen_rewards, rejected_rewards):
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
""",
    reference=_reference_loss,
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
