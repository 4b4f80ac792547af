"""Lab 12: the package's own functions pass, and planted wrong answers fail with the message that
names their mistake.

The cases are registered in ``PLANTED``; tests/test_exercises.py runs them with every lab's and its
guard counts them. The tests below run them too, so this file checks lab 12 on its own."""
from collections import namedtuple

import pytest
import torch

from rlhf_minimal.exercises import CORRECT, INCORRECT, NOT_ATTEMPTED

Planted = namedtuple("Planted", "question mistake answer words")


def _group(scores, g, eps, how="sample"):
    groups = scores.view(-1, g)
    centred = groups - groups.mean(-1, keepdim=True)
    if how == "centred":
        return centred.reshape(-1)
    std = groups.std(-1, unbiased=(how != "population"), keepdim=True)
    return (centred / (std + (eps if how != "no_eps" else 0.0))).reshape(-1)


def _whole_batch(scores, g, eps):
    return (scores - scores.mean()) / (scores.std() + eps)


def _grpo(lp, old, ref, adv, mask, clip_eps, beta, kl="k3", masked=True):
    ratio = torch.exp(lp - old)
    surrogate = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))
    log_r = ref - lp
    per_token = {"k3": torch.exp(log_r) - log_r - 1, "k1": -log_r,
                 "upside_down": torch.exp(-log_r) + log_r - 1}[kl]
    m = mask if masked else torch.ones_like(mask)
    return ((surrogate + beta * per_token) * m).sum() / m.sum()


def _verifier(score_of_unverifiable=None, reward="acceptable", lists_verifiable=True):
    from rlhf_minimal.verifier import verifiable

    def answer(task, response, judge):
        can = verifiable(task) and (lists_verifiable or task.family != "generation")
        if not can:
            return score_of_unverifiable
        verdict = judge.score(task, response)
        return verdict.score if reward == "gold" else (1.0 if verdict.acceptable else 0.0)
    return answer


PLANTED = [
    Planted("lab12.q1", "normalised over the whole batch", _whole_batch, ["same prompt"]),
    Planted("lab12.q1", "not divided by the std", lambda s, g, e: _group(s, g, e, "centred"),
            ["did not divide"]),
    Planted("lab12.q1", "population std", lambda s, g, e: _group(s, g, e, "population"), ["sample std"]),
    Planted("lab12.q1", "no eps: a tied group divides by zero", lambda s, g, e: _group(s, g, e, "no_eps"),
            ["eps"]),
    Planted("lab12.q2", "KL term missing", lambda *a: _grpo(*a[:6], 0.0), ["KL term is missing"]),
    Planted("lab12.q2", "KL term with the wrong sign", lambda *a: _grpo(*a[:6], -a[6]), ["wrong sign"]),
    Planted("lab12.q2", "k1 instead of k3", lambda *a: _grpo(*a, kl="k1"), ["k1"]),
    Planted("lab12.q2", "ratio inside k3 upside down", lambda *a: _grpo(*a, kl="upside_down"), ["upside down"]),
    Planted("lab12.q2", "padding counted", lambda *a: _grpo(*a, masked=False), ["padding"]),
    Planted("lab12.q3", "unverifiable prompts scored 0", _verifier(score_of_unverifiable=0.0), ["return None"]),
    Planted("lab12.q3", "the gold score instead of 1/0", _verifier(reward="gold"), ["1 or 0"]),
    Planted("lab12.q3", "list requests treated as unverifiable", _verifier(lists_verifiable=False),
            ["can be checked"]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.mistake) for c in PLANTED])
def test_planted_mistake_fails_with_its_message(case):
    from rlhf_minimal.exercises import lab12

    result = getattr(lab12, case.question.split(".")[1]).evaluate(case.answer)
    assert result.status == INCORRECT, f"{case.mistake}: {result}"
    for word in case.words:
        assert word in result.message, f"{case.mistake}: {word!r} not in {result.message!r}"


def test_package_functions_and_references_pass():
    from rlhf_minimal.exercises.lab12 import q1, q2, q3
    from rlhf_minimal.grpo import group_advantages, grpo_loss
    from rlhf_minimal.verifier import Unverifiable, Verifier

    assert q1.evaluate(group_advantages).status == CORRECT
    assert q2.evaluate(lambda *a: grpo_loss(*a)[0]).status == CORRECT
    verifier = {}

    def package_verifier(task, response, judge):
        v = verifier.setdefault(id(judge), Verifier(judge.world))
        try:
            return v.check(task, response)
        except Unverifiable:
            return None
    assert q3.evaluate(package_verifier).status == CORRECT
    for q in (q1, q2, q3):
        assert q.evaluate(q.reference).status == CORRECT
        assert q.evaluate(None).status == NOT_ATTEMPTED
