"""Lab 05 exercises: GAE, the clipped policy loss, and the per-token KL reward."""
from __future__ import annotations

import inspect

import torch

from ..ppo import gae
from . import Incorrect, Question, expect_close


def _reference_gae(rewards, values, mask, gamma, lam):
    """An independent double loop: A_t = sum_l (gamma lam)^l delta_{t+l} over real tokens."""
    B, T = rewards.shape
    out = torch.zeros(B, T)
    for b in range(B):
        n = int(mask[b].sum())
        deltas = [rewards[b, t] + gamma * (values[b, t + 1] if t + 1 < n else 0.0) - values[b, t]
                  for t in range(n)]
        for t in range(n):
            out[b, t] = sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t))
    return out, (out + values) * mask


def _check_gae(fn) -> None:
    g = torch.Generator().manual_seed(6)
    rewards, values = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    mask = torch.tensor([[1] * n + [0] * (6 - n) for n in (6, 3, 1, 5)], dtype=torch.float)
    rewards = rewards * mask
    got = fn(rewards, values, mask, 1.0, 0.95)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Incorrect("return a tuple (advantages, returns).")
    advantages, returns = got
    want_adv, want_ret = _reference_gae(rewards, values, mask, 1.0, 0.95)
    if torch.allclose(advantages * mask, (_reference_gae(rewards, values * 0, mask, 1.0, 0.95)[0]) * mask, atol=1e-5):
        raise Incorrect("your advantages ignore the values: delta_t = r_t + gamma V_{t+1} - V_t.")
    full = torch.ones_like(mask)
    if not torch.allclose(advantages, want_adv, atol=1e-4) and torch.allclose(
            advantages * mask, _reference_gae(rewards, values, full, 1.0, 0.95)[0] * mask, atol=1e-4):
        raise Incorrect("values after the end of a response leak in: the value after the last "
                        "response token must count as 0 (the episode ends there). Use the mask.")
    expect_close(advantages * mask, want_adv, "the advantages (gamma=1, lambda=0.95)", atol=1e-4)
    expect_close(returns * mask, want_ret, "the returns (advantages + values)", atol=1e-4)
    a1, _ = fn(rewards, values, mask, 0.9, 0.0)
    expect_close(a1 * mask, _reference_gae(rewards, values, mask, 0.9, 0.0)[0],
                 "the advantages with lambda=0 (one-step TD errors)", atol=1e-4)


q1 = Question(
    "Lab 05, question 1 (generalised advantage estimation)",
    _check_gae,
    hints=["Go backwards in time: A_t = delta_t + gamma * lam * A_{t+1}, starting from 0 after the end.",
           ("delta_t = r_t + gamma * V_{t+1} - V_t, where V_{t+1} is 0 at and after the last real token; "
            "multiply by the mask so nothing beyond the response counts.")],
    solution="import torch\n\n\n" + inspect.getsource(gae),  # the package's own gae is the worked answer
    reference=lambda r, v, m, g, l: _reference_gae(r, v, m, g, l),
)


def _reference_policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps):
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = torch.maximum(-advantages * ratio,
                              -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))
    return (per_token * mask).sum() / mask.sum()


def _check_policy_loss(fn) -> None:
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.0, 3.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    old = torch.zeros(1, 6)
    got = fn(ratios.log(), old, adv, mask, 0.2)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise Incorrect("return the loss as a 0-dim tensor.")
    want = _reference_policy_loss(ratios.log(), old, adv, mask, 0.2)
    unmasked = _reference_policy_loss(ratios.log(), old, adv, torch.ones_like(mask), 0.2)
    if abs(got.item() - unmasked.item()) < 1e-6:
        raise Incorrect("the last token is padding (mask 0) but it counts in your loss: take the "
                        "mean over masked tokens only.")
    minimum = ((torch.minimum(-adv * ratios, -adv * ratios.clamp(0.8, 1.2))) * mask).sum() / mask.sum()
    if abs(got.item() - minimum.item()) < 1e-6:
        raise Incorrect("you took the minimum of the two losses; PPO is pessimistic: the loss is the "
                        "maximum of -A r and -A clip(r) (the minimum of the two objectives).")
    if abs(got.item() + want.item()) < 1e-6:
        raise Incorrect("the sign is flipped: the loss is minus the clipped objective.")
    expect_close(got, want, "the clipped loss on six tokens with a padded one")


q2 = Question(
    "Lab 05, question 2 (the clipped surrogate)",
    _check_policy_loss,
    hints=["ratio = exp(logprobs - old_logprobs); the loss per token is max(-A * ratio, -A * clip(ratio, 1-eps, 1+eps)).",
           "Average over response tokens only: (per_token * mask).sum() / mask.sum()."],
    solution="""
import torch

def policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps):
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = torch.maximum(-advantages * ratio,
                              -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))
    return (per_token * mask).sum() / mask.sum()
""",
    reference=_reference_policy_loss,
)


def _reference_kl_rewards(scores, logprobs, ref_logprobs, mask, beta):
    rewards = -beta * (logprobs - ref_logprobs) * mask
    last = mask.sum(-1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def _check_kl_rewards(fn) -> None:
    g = torch.Generator().manual_seed(7)
    logprobs, ref = -torch.rand(3, 5, generator=g) * 3, -torch.rand(3, 5, generator=g) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float)
    scores = torch.tensor([0.5, -1.0, 2.0])
    got = fn(scores, logprobs, ref, mask, 0.1)
    want = _reference_kl_rewards(scores, logprobs, ref, mask, 0.1)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        raise Incorrect(f"return a tensor of shape {tuple(want.shape)}, one reward per token.")
    if torch.allclose(got, _reference_kl_rewards(scores, logprobs, ref, mask, -0.1), atol=1e-6):
        raise Incorrect("the KL term has the wrong sign: tokens the policy likes more than the "
                        "reference does are penalised, r_t = -beta (log pi - log pi_ref).")
    at_end = torch.zeros_like(want)
    at_end[:, -1] = scores
    if torch.allclose(got, -0.1 * (logprobs - ref) * mask + at_end, atol=1e-6):
        raise Incorrect("the score lands on the last column, but two responses are shorter: put it "
                        "on each response's last real token.")
    if torch.allclose(got * mask, want, atol=1e-6) and not torch.allclose(got, want, atol=1e-6):
        raise Incorrect("padding positions carry a reward: multiply the KL term by the mask.")
    expect_close(got, want, "the per-token rewards")


q3 = Question(
    "Lab 05, question 3 (the per-token KL reward)",
    _check_kl_rewards,
    hints=["Every response token gets -beta * (logprobs - ref_logprobs); multiply by the mask.",
           "The last real token of row b is at index mask[b].sum() - 1; add scores[b] there."],
    solution="""
import torch

def kl_rewards(scores, logprobs, ref_logprobs, mask, beta):
    rewards = -beta * (logprobs - ref_logprobs) * mask
    last = mask.sum(-1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards
""",
    reference=_reference_kl_rewards,
)
