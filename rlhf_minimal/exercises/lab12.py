"""Lab 12 exercises: GRPO's group advantage, its loss with the k3 KL term, and a verifier reward."""
from __future__ import annotations

import inspect
import statistics

import torch

from ..grpo import group_advantages
from . import Incorrect, Question, diagnose_group_advantages, expect_close


# ----------------------------------------------------------------------------- q1: the group advantage
def _reference_group_advantages(scores, group_size, eps):
    """An independent loop with Python's statistics module (sample standard deviation)."""
    out = []
    values = scores.tolist()
    for start in range(0, len(values), group_size):
        group = values[start:start + group_size]
        mean, std = statistics.fmean(group), statistics.stdev(group)
        out += [(s - mean) / (std + eps) for s in group]
    return torch.tensor(out)


def _check_group_advantages(fn) -> None:
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, -1.0, 0.5, 3.0, 0.0])
    got = fn(scores, 4, 1e-4)
    want = _reference_group_advantages(scores, 4, 1e-4)
    if not isinstance(got, torch.Tensor) or got.shape != scores.shape:
        raise Incorrect(f"return one advantage per response, a tensor of shape {tuple(scores.shape)}.")
    diagnose_group_advantages(got.view(-1, 4), scores.view(-1, 4))
    expect_close(got, want, "the group advantages of three groups of 4", atol=1e-4)


q1 = Question(
    "Lab 12, question 1 (the group advantage)",
    _check_group_advantages,
    hints=["View the scores as [number of prompts, group_size]: each row is one prompt's group.",
           "Per row: (s - row mean) / (row std + eps), then flatten back to one value per response."],
    solution="import torch\n\n\n" + inspect.getsource(group_advantages),
    reference=_reference_group_advantages,
)


# ----------------------------------------------------------------------------- q2: the GRPO loss
def _reference_grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps, beta):
    """Token by token, in plain Python: the clipped surrogate and k3 = q/p - log(q/p) - 1."""
    total, count = 0.0, 0
    for b in range(logprobs.size(0)):
        for t in range(logprobs.size(1)):
            if mask[b, t] == 0:
                continue
            ratio = float(torch.exp(logprobs[b, t] - old_logprobs[b, t]))
            a = float(advantages[b, t])
            surrogate = max(-a * ratio, -a * min(max(ratio, 1 - clip_eps), 1 + clip_eps))
            q_over_p = float(torch.exp(ref_logprobs[b, t] - logprobs[b, t]))
            k3 = q_over_p - float(ref_logprobs[b, t] - logprobs[b, t]) - 1
            total += surrogate + beta * k3
            count += 1
    return torch.tensor(total / count)


def _check_grpo_loss(fn) -> None:
    g = torch.Generator().manual_seed(12)
    logprobs = -torch.rand(3, 5, generator=g) * 2
    old = logprobs + 0.3 * torch.randn(3, 5, generator=g)
    ref = logprobs + 0.5 * torch.randn(3, 5, generator=g)
    advantages = torch.tensor([1.2, -0.7, 0.4])[:, None].expand(3, 5).clone()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float)
    got = fn(logprobs, old, ref, advantages, mask, 0.2, 0.04)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise Incorrect("return the loss as a 0-dim tensor.")
    want = _reference_grpo_loss(logprobs, old, ref, advantages, mask, 0.2, 0.04)
    surrogate_only = _reference_grpo_loss(logprobs, old, ref, advantages, mask, 0.2, 0.0)
    if abs(got.item() - surrogate_only.item()) < 1e-6:
        raise Incorrect("the KL term is missing: GRPO adds beta * k3 to the loss (not to the reward).")
    if abs(got.item() - _reference_grpo_loss(logprobs, old, ref, advantages, mask, 0.2, -0.04).item()) < 1e-6:
        raise Incorrect("the KL term has the wrong sign: the loss *adds* beta * KL, a penalty for drifting.")
    naive = surrogate_only + 0.04 * (
        ((logprobs - ref) * mask).sum() / mask.sum())
    if abs(got.item() - naive.item()) < 1e-6:
        raise Incorrect("you used log pi - log pi_ref per token (k1), which can be negative; GRPO uses "
                        "k3 = pi_ref/pi - log(pi_ref/pi) - 1, never negative and unbiased.")
    upside_down = torch.exp(logprobs - ref) - (logprobs - ref) - 1  # pi/pi_ref instead of pi_ref/pi
    if abs(got.item() - (surrogate_only + 0.04 * upside_down[mask.bool()].mean()).item()) < 1e-6:
        raise Incorrect("the ratio inside k3 is upside down: it is pi_ref / pi (the reference over the policy).")
    unmasked = _reference_grpo_loss(logprobs, old, ref, advantages, torch.ones_like(mask), 0.2, 0.04)
    if abs(got.item() - unmasked.item()) < 1e-6:
        raise Incorrect("padding (mask 0) counts in your loss: average over response tokens only.")
    expect_close(got, want, "the GRPO loss (beta = 0.04, eps = 0.2) on three padded responses", atol=1e-5)


q2 = Question(
    "Lab 12, question 2 (the GRPO loss with its KL term)",
    _check_grpo_loss,
    hints=["Start from lab 5's clipped loss: ratio = exp(logprobs - old_logprobs), per token "
           "max(-A ratio, -A clip(ratio, 1-eps, 1+eps)).",
           "Add beta * k3 per token, with log_r = ref_logprobs - logprobs and k3 = exp(log_r) - log_r - 1; "
           "then average over the masked tokens."],
    solution="""
import torch

def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps, beta):
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.maximum(-advantages * ratio,
                              -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))
    log_r = ref_logprobs - logprobs
    k3 = torch.exp(log_r) - log_r - 1
    return ((surrogate + beta * k3) * mask).sum() / mask.sum()
""",
    reference=_reference_grpo_loss,
)


# ----------------------------------------------------------------------------- q3: the verifier reward
_CASES = None


def _verifier_cases():
    """(task, response, expected) on the ci world: answer keys and the writers' right and wrong answers."""
    global _CASES
    if _CASES is None:
        import random

        from ..judge import GoldJudge
        from ..world import _wrong_response, ideal_response, make_world

        world = make_world(0, "ci")
        judge = GoldJudge(world)
        rng = random.Random(0)
        cases, seen = [], set()
        for task in world.splits["eval"]:
            kind = task.family + (task.spec.get("kind", "") if task.family == "generation" else "")
            if (kind, task.lang) in seen or task.lang != "a":
                continue
            seen.add((kind, task.lang))
            good, bad = ideal_response(world, task), _wrong_response(world, task, rng)
            cases += [(task, good), (task, bad), (task, "i hope this helps . " + good)]
        _CASES = (judge, cases)
    return _CASES


def _reference_verifier_reward(task, response, judge):
    from ..verifier import verifiable

    if not verifiable(task):
        return None
    return 1.0 if judge.score(task, response).acceptable else 0.0


def _check_verifier_reward(fn) -> None:
    from ..verifier import kind_of

    judge, cases = _verifier_cases()
    for task, response in cases:
        want = _reference_verifier_reward(task, response, judge)
        got = fn(task, response, judge)
        kind = kind_of(task)
        if want is None and got is not None:
            raise Incorrect(f"a {kind} task has no answer key, yet you returned {got!r}: return None, "
                            "so that the prompt is left out of training (and counted), not scored 0.")
        if want is not None and got is None:
            raise Incorrect(f"a {kind} task can be checked (its spec holds the answer), but you returned None.")
        if want is not None and got not in (0.0, 1.0):
            raise Incorrect(f"the verifier's reward is 1 or 0, got {got!r} on a {kind} task "
                            "(the gold score is not what a verifier returns: use the verdict's acceptable).")
        if got != want:
            raise Incorrect(f"on the {kind} task {task.prompt.strip()!r} with the response {response!r} "
                            f"you gave {got}, the check says {want} (is filler accepted?).")


q3 = Question(
    "Lab 12, question 3 (the verifier reward)",
    _check_verifier_reward,
    hints=["rlhf_minimal.verifier.verifiable(task) says whether a task has an answer key.",
           "For those, judge.score(task, response).acceptable is the check: 1.0 if True, else 0.0; "
           "for the others return None."],
    solution="""
from rlhf_minimal.verifier import verifiable

def verifier_reward(task, response, judge):
    if not verifiable(task):
        return None
    return 1.0 if judge.score(task, response).acceptable else 0.0
""",
    reference=_reference_verifier_reward,
)
