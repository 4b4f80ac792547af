"""Lab 05 exercises: GAE, the clipped policy loss, the per-token KL reward and the minibatch step.
All four are pieces of the lab's own PPO run (:class:`rlhf_minimal.ppo.PPOPieces`)."""
from __future__ import annotations

import copy
import inspect
from dataclasses import replace

import torch

from ..ppo import gae, per_token_rewards, policy_loss
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
    piece=gae, piece_name="gae (rlhf_minimal.ppo)",
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
    piece=policy_loss, piece_name="policy_loss (rlhf_minimal.ppo)",
)


def _reference_kl_rewards(scores, logprobs, ref_logprobs, mask, beta):
    rewards = -beta * (logprobs - ref_logprobs) * mask
    last = mask.sum(-1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def _reference_per_token_rewards(scores, logprobs, ref_logprobs, mask, beta):
    return _reference_kl_rewards(scores, logprobs, ref_logprobs, mask, beta), (logprobs - ref_logprobs) * mask


def _check_kl_rewards(fn) -> None:
    g = torch.Generator().manual_seed(7)
    logprobs, ref = -torch.rand(3, 5, generator=g) * 3, -torch.rand(3, 5, generator=g) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float)
    scores = torch.tensor([0.5, -1.0, 2.0])
    out = fn(scores, logprobs.clone(), ref.clone(), mask, 0.1)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Incorrect("return a tuple (rewards, kl): the rewards, and the per-token KL estimate "
                        "log pi - log pi_ref on response tokens (0 on padding), which the run logs.")
    got, kl = out
    expect_close(kl, (logprobs - ref) * mask, "the per-token KL (log pi - log pi_ref, times the mask)")
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
    hints=["kl = (logprobs - ref_logprobs) * mask; every response token gets -beta * kl.",
           "The last real token of row b is at index mask[b].sum() - 1; add scores[b] there."],
    solution="""
import torch

def kl_rewards(scores, logprobs, ref_logprobs, mask, beta):
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = mask.sum(-1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl
""",
    reference=_reference_per_token_rewards,
    piece=per_token_rewards, piece_name="per_token_rewards (rlhf_minimal.ppo)",
)


# ----------------------------------------------------------------------------- q4: the minibatch step

def _tiny_batch():
    """A policy with a value head (one block, 16 dimensions), one rollout batch of 4 responses with
    ratios away from 1 and non-zero advantages, and a configuration that uses every term."""
    from ..model import GPT, GPTConfig
    from ..ppo import PolicyWithValue, PPOConfig, Rollout
    from ..sampling import token_logprobs

    with torch.random.fork_rng():
        torch.manual_seed(5)
        policy = PolicyWithValue(GPT(GPTConfig(vocab_size=11, n_layer=1, n_head=2, d_model=16, max_len=12)))
        torch.nn.init.normal_(policy.value_head.weight, std=0.2)
    g = torch.Generator().manual_seed(9)
    B, P, N = 4, 3, 5
    ids = torch.randint(2, 11, (B, P + N), generator=g)
    mask = torch.tensor([[1] * n + [0] * (N - n) for n in (5, 3, 1, 4)])
    attn = torch.cat([torch.ones(B, P, dtype=torch.long), mask], 1)
    with torch.no_grad():
        logits, values = policy(ids, attn)
        logprobs = token_logprobs(logits[:, P - 1:-1], ids[:, P:], 1.0)
    old = (logprobs + 0.3 * torch.randn(B, N, generator=g)) * mask
    noise = lambda: torch.randn(B, N, generator=g) * mask  # noqa: E731
    batch = Rollout(ids, attn, ids[:, P:], mask, old, old.clone(), values[:, P - 1:-1] + 0.1 * noise(),
                    noise(), noise(), torch.zeros(B, N), torch.zeros(B), torch.zeros(B),
                    torch.ones(B, dtype=torch.bool), None)
    cfg = PPOConfig(prompts_per_step=4, minibatch_size=2, ppo_epochs=2, entropy_coef=0.05)
    return policy, batch, cfg


def _run_update(policy, batch, cfg, pieces):
    """One ppo_update (2 epochs of 2 minibatches) from a copy of ``policy``: its parameters and stats."""
    from ..ppo import ppo_update

    policy = copy.deepcopy(policy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    stats = ppo_update(policy, optimizer, batch, cfg, torch.Generator().manual_seed(0), pieces=pieces)
    return torch.cat([p.detach().flatten() for p in policy.parameters()]), stats


def _check_minibatch_step(fn) -> None:
    from ..ppo import PPOPieces

    policy, batch, cfg = _tiny_batch()
    start = torch.cat([p.detach().flatten() for p in policy.parameters()])
    want, want_stats = _run_update(policy, batch, cfg, PPOPieces())
    try:
        got, got_stats = _run_update(policy, batch, cfg, PPOPieces(minibatch_step=fn))
    except (KeyError, AttributeError, TypeError) as err:
        raise Incorrect(f"ppo_update could not use what your step returned ({type(err).__name__}: {err}); "
                        "end it with return step_stats(loss, pg_loss, vf_loss, entropy, logprobs, mb, cfg).") from None
    if torch.equal(got, start):
        raise Incorrect("the parameters did not move: after the loss, call precision.backward(loss) "
                        "(the gradients) and precision.step(optimizer) (the update).")
    if torch.allclose(got, want, atol=1e-5):
        for key in want_stats:
            if abs(got_stats[key] - want_stats[key]) > 1e-5:
                raise Incorrect(f"the parameters are right but the reported {key} is off "
                                f"({got_stats[key]:.5f}, expected {want_stats[key]:.5f}): pass step_stats "
                                "the losses and the new log-probabilities you computed.")
        return
    flipped = PPOPieces(policy_loss=lambda *args: -policy_loss(*args))
    variants = [
        (_run_update(policy, batch, cfg, flipped)[0],
         "the policy term has the wrong sign: the loss is + pg_loss (policy_loss is already minus the "
         "clipped objective), so gradient descent raises the objective."),
        (_run_update(policy, batch, replace(cfg, entropy_coef=0.0), PPOPieces())[0],
         "the entropy term is missing: loss = pg_loss + cfg.vf_coef * vf_loss - cfg.entropy_coef * entropy."),
        (_run_update(policy, batch, replace(cfg, vf_coef=0.0), PPOPieces())[0],
         "the value loss is missing: loss = pg_loss + cfg.vf_coef * vf_loss - cfg.entropy_coef * entropy, "
         "or the value function never learns."),
    ]
    for params, message in variants:
        if torch.allclose(got, params, atol=1e-5):
            raise Incorrect(message)
    raise Incorrect(f"after four minibatch steps your parameters differ from ppo_update's by up to "
                    f"{(got - want).abs().max().item():.3g}. Check the order: forward on mb.ids and "
                    "mb.attn, the three losses, the total, zero_grad, backward, clip_grad_norm, step.")


def _reference_minibatch_step(policy, optimizer, mb, cfg, pieces, precision):
    from ..ppo import entropy_from_logits, masked_mean, step_stats, value_loss
    from ..sampling import token_logprobs

    P, mask = mb.prompt_width, mb.mask.float()
    with precision.autocast():
        logits, values = policy(mb.ids, mb.attn)
    logits, values = logits[:, P - 1:-1].float(), values[:, P - 1:-1].float()
    logprobs = token_logprobs(logits, mb.response, cfg.temperature)
    pg_loss = pieces.policy_loss(logprobs, mb.logprobs, mb.advantages, mask, cfg.clip_eps)
    vf_loss = value_loss(values, mb.values, mb.returns, mask, cfg.value_clip)
    entropy = masked_mean(entropy_from_logits(logits, cfg.temperature), mask)
    loss = pg_loss + cfg.vf_coef * vf_loss - cfg.entropy_coef * entropy
    optimizer.zero_grad(set_to_none=True)
    precision.backward(loss)
    precision.clip_grad_norm(policy, optimizer, cfg.max_grad_norm)
    precision.step(optimizer)
    return step_stats(loss, pg_loss, vf_loss, entropy, logprobs, mb, cfg)


q4 = Question(
    "Lab 05, question 4 (the minibatch step)",
    _check_minibatch_step,
    hints=[("The blanks, in order: policy(mb.ids, mb.attn); pieces.policy_loss(logprobs, mb.logprobs, "
            "mb.advantages, mask, cfg.clip_eps); the total eq-ppo-loss; precision.backward(loss); "
            "precision.step(optimizer)."),
           ("`precision` wraps plain PyTorch: on the CPU precision.backward(loss) is loss.backward() and "
            "precision.step(optimizer) is optimizer.step(); on a GPU they add float16 loss scaling.")],
    solution=inspect.getsource(_reference_minibatch_step).replace("def _reference_minibatch_step(", "def minibatch_step(", 1),
    reference=_reference_minibatch_step,
    piece=None,  # ppo_update's own step: PPOPieces.minibatch_step is None by default piece_name="minibatch step (the one inside ppo_update)",
)
