"""Lab 01 exercises: the next-token loss, and a gold checker."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Incorrect, Question, expect_close


def _reference_next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:-1], tokens[1:])


def _check_next_token_loss(fn) -> None:
    g = torch.Generator().manual_seed(1)
    logits, tokens = torch.randn(6, 11, generator=g), torch.randint(0, 11, (6,), generator=g)
    got = fn(logits, tokens)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise Incorrect("return the mean loss as a 0-dim tensor.")
    if abs(got.item() - F.cross_entropy(logits, tokens).item()) < 1e-6:
        raise Incorrect("you scored each position on its own token. The logits at position t "
                        "predict token t+1: compare logits[:-1] with tokens[1:].")
    if abs(got.item() - F.cross_entropy(logits[:-1], tokens[1:], reduction="sum").item()) < 1e-5:
        raise Incorrect("that is the sum over positions; chapter 1's next-token loss is the mean over positions.")
    expect_close(got, _reference_next_token_loss(logits, tokens), "the loss")


q1 = Question(
    "Lab 01, question 1 (next-token loss)",
    _check_next_token_loss,
    hints=["The model's output at position t is its guess for the token at t+1.",
           "`F.cross_entropy(logits[:-1], tokens[1:])` averages -log p(next token) over positions."],
    solution="""
import torch.nn.functional as F

def next_token_loss(logits, tokens):
    # logits[t] predicts tokens[t + 1]
    return F.cross_entropy(logits[:-1], tokens[1:])
""",
    reference=_reference_next_token_loss,
)


def _reference_classify_correct(label: str, response: str) -> bool:
    words = response.split()
    return bool(words) and words[0] == label


_CLASSIFY_CASES = [
    ("good", "good .", True), ("bad", "bad .", True), ("good", "bad .", False),
    ("bad", "good . no , bad .", False), ("good", "", False), ("bad", "i think it is bad .", False),
    ("good", "good . it was a nice review .", True),
]


def _check_classify(fn) -> None:
    for label, response, want in _CLASSIFY_CASES:
        try:
            got = fn(label, response)
        except IndexError as err:
            if response.split():
                raise
            raise Incorrect(f"classify_correct({label!r}, {response!r}) raised IndexError ({err}): an empty "
                            "response has no first word. Check for it and return False.") from None
        if not isinstance(got, bool):
            raise Incorrect(f"return True or False, not {type(got).__name__} (for {response!r}).")
        if got != want:
            why = ("the verdict is the first word: a label mentioned later does not count"
                   if label in response.split() else "the first word of the response is the answer")
            raise Incorrect(f"classify_correct({label!r}, {response!r}) should be {want}: {why}.")


q2 = Question(
    "Lab 01, question 2 (a gold checker)",
    _check_classify,
    hints=["Split the response into words; what should the first one be?",
           "An empty response has no first word: return False."],
    solution="""
def classify_correct(label, response):
    words = response.split()
    return bool(words) and words[0] == label
""",
    reference=_reference_classify_correct,
)
