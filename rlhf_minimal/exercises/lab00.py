"""Lab 00 exercise: the masked mean, used by every loss in the course."""
from __future__ import annotations

import torch

from . import Incorrect, Question, expect_close


def _reference_masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum()


def _check_masked_mean(fn) -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])
    got = fn(values, mask)
    if not isinstance(got, torch.Tensor):
        raise Incorrect(f"return a tensor, not {type(got).__name__}.")
    if got.dim() != 0:
        raise Incorrect(f"return one number (a 0-dim tensor), got shape {tuple(got.shape)}.")
    if abs(got.item() - values.mean().item()) < 1e-6:
        raise Incorrect("you averaged over every position, padding included: only positions "
                        "where mask is 1 count.")
    if abs(got.item() - (values * mask).mean().item()) < 1e-6:
        raise Incorrect("you zeroed the masked positions but still divided by the number of "
                        "all positions: divide by the number of positions where mask is 1.")
    expect_close(got, 93.0 / 5, "masked_mean on a hand example")
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 7, generator=generator)
    mask = (torch.rand(3, 7, generator=generator) > 0.4).long()
    mask[0, 0] = 1
    expect_close(fn(values, mask), _reference_masked_mean(values, mask), "masked_mean on random input")


q1 = Question(
    "Lab 00, question 1 (masked mean)",
    _check_masked_mean,
    hints=[
        "Multiply by the mask so masked positions contribute zero, then divide by how many "
        "positions count.",
        "The number of positions that count is `mask.sum()`; convert the mask to the values' "
        "dtype first.",
    ],
    solution="""
def masked_mean(values, mask):
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum()
""",
    reference=_reference_masked_mean,
    correct_message="this is how every loss in the course averages over real tokens only.",
)
