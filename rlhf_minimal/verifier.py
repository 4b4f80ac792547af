"""A verifier: a reward computed by checking the answer, with no model and no labels (chapter 8).

Reasoning models are trained with *verifiable rewards*: a maths answer is compared with the key,
code is run against its tests. Our world has answer keys too: each task's ``spec`` (the
creature's true colour, the review's label, the names in the text, the exact past-tense
sentence...). :class:`Verifier` gives 1 to a response that the gold judge's family check accepts
(:attr:`~rlhf_minimal.judge.Verdict.acceptable`: right answer, nothing false, no filler) and 0
otherwise, on the tasks that have a key to check against:

* **verifiable**: ``open_qa``, ``chat`` and ``closed_qa`` (a fact of the world), ``classify`` (a
  label), ``extract`` (a set of names), ``rewrite`` and ``summarize`` (a target sentence) and the
  list requests of ``generation`` (names that share a property).
* **not verifiable**: stories (``generation`` of kind ``story``: open-ended, many good answers
  and no key), ``refuse`` (whether to help is a judgement about harm, not a fact) and
  ``unanswerable`` (there is no fact to compare with: that "i do not know ." is the best answer
  is the labelers' priority, not a key).

Scoring a task of the second kind raises :class:`Unverifiable`: nothing is silently given 0.
:meth:`Verifier.split` separates a prompt set into the prompts a verifier can train on and the
count, per family, of those it leaves out.
"""
from __future__ import annotations

from collections import Counter

import torch

from .judge import GoldJudge
from .world import Task, World

VERIFIABLE_FAMILIES = ("open_qa", "chat", "closed_qa", "classify", "extract", "rewrite", "summarize",
                       "generation")  # generation: its list requests only (see verifiable())
UNVERIFIABLE = ("generation (story)", "refuse", "unanswerable")


class Unverifiable(ValueError):
    """A task with no answer key to check a response against."""


def verifiable(task: Task) -> bool:
    """Whether ``task`` has an answer key: its family is one of :data:`VERIFIABLE_FAMILIES` and,
    for ``generation``, it asks for a list of names (not a story)."""
    if task.family == "generation":
        return task.spec.get("kind") == "list"
    return task.family in VERIFIABLE_FAMILIES


def kind_of(task: Task) -> str:
    """The family, with ``generation`` split into ``generation (list)`` and ``generation (story)``."""
    return f"generation ({task.spec.get('kind')})" if task.family == "generation" else task.family


class Verifier:
    """The verifiable reward of one world: ``score(prompts, responses)`` gives 1.0 where the
    answer checks out and 0.0 where it does not (a tensor, like a reward model's ``score``)."""

    def __init__(self, world: World):
        self.judge = GoldJudge(world)

    def check(self, task: Task, response: str) -> float:
        """1.0 if ``response`` is an acceptable answer to ``task``, else 0.0 (eq-verifier-reward).
        Raises :class:`Unverifiable` for a task without an answer key."""
        if not verifiable(task):
            raise Unverifiable(f"no answer key for a {kind_of(task)} task ({task.prompt.strip()!r}): "
                               f"a verifier can check only {', '.join(VERIFIABLE_FAMILIES)} (lists); "
                               "leave such prompts out with Verifier.split, or score them with a reward model")
        return 1.0 if self.judge.score(task, response).acceptable else 0.0

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """One 0/1 reward per (prompt, response); the prompts must be the world's."""
        return torch.tensor([self.check(self.judge.task_for(p), r) for p, r in zip(prompts, responses)])

    @staticmethod
    def split(tasks: list[Task]) -> tuple[list[Task], dict]:
        """``(verifiable tasks, {kind: number left out})``, the order of ``tasks`` kept."""
        kept = [t for t in tasks if verifiable(t)]
        left_out = Counter(kind_of(t) for t in tasks if not verifiable(t))
        return kept, dict(sorted(left_out.items()))
