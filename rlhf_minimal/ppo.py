"""Stage 3: PPO against the reward model (chapter 5).

One rollout batch, then several epochs of minibatch updates on it, repeated ``steps`` times.
The pieces, each a function named after the book's equation:

* :func:`rollout`: sample responses with the KV cache at ``temperature`` (top-k/top-p off: they
  would make the sampling distribution differ from the one whose log-probs we use); the response
  is everything up to and including the first EOS. Log-probs come from ``logits / temperature``
  (the distribution we sampled from). The reference log-probs are computed once per rollout. It
  returns a :class:`Rollout`, one field per tensor with its shape.
* :func:`per_token_rewards` (eq-ppo-reward): ``-beta * (log pi - log pi_ref)`` on every response
  token, plus the normalised reward-model score on the last one. A response that never emitted EOS
  gets ``no_eos_penalty`` instead of its score.
* :func:`gae` (eq-gae): advantages and returns over the response tokens.
* :func:`policy_loss` (eq-ppo-clip) and :func:`value_loss` (eq-value-clip).
* :class:`AdaptiveKL` (eq-adaptive-kl): Ziegler et al.'s proportional controller towards a target KL.
* :func:`ppo_update`: the whole update on one screen (minibatches, forward, the three losses,
  backward, clipping, optimizer step); :func:`train_ppo` alternates rollouts and updates.
* :class:`PPOPieces`: the functions lab 5 has students write (the KL reward, GAE, the clipped loss
  and the minibatch step); by default the package's own, passed down from :func:`ppo_policy`.

The evaluation (best-of-n, head-to-head win rates, KL to SFT) is in :mod:`rlhf_minimal.evaluate`.

KL to the reference (the SFT model, frozen) enters the *reward*; the ratio between the new and
the old policy (the one that sampled this batch) enters the *loss*. They are different things.

Simplifications, stated up front: one process, one device, no reward or value model sharing
weights with the reference; the value function is a zero-initialised head on the policy
(``value_model="policy"``) or a separate critic initialised from the reward model
(``value_model="critic"``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import RunSettings, pick_device, run_settings
from .evaluate import evaluate_ppo
from .graphs import GraphedStep, graph_training, make_graph_optimizer
from .judge import GoldJudge
from .model import GPT
from .pieces import pieces_key
from .reward import LikelihoodReward
from .sampling import generate, token_logprobs
from .scale import current_scale, preset
from .train import FiniteGuard, Precision, progress, set_seed
from .world import Task


@dataclass(frozen=True)
class PPOConfig:
    steps: int = 40                  # rollout batches
    prompts_per_step: int = 64       # responses sampled per rollout batch
    group_size: int = 1              # responses per prompt in a batch; > 1 centres each score on
                                     # the mean of the other responses to its prompt (eq-group-baseline)
    max_new_tokens: int = 40
    temperature: float = 1.0
    ppo_epochs: int = 4              # passes over each rollout batch
    minibatch_size: int = 16
    lr: float = 3e-5
    value_lr: float = 3e-4           # the value head (or critic) learns faster than the policy
    clip_eps: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.5
    entropy_coef: float = 0.0
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.1             # beta; the starting value when adaptive
    adaptive_kl: bool = False
    target_kl: float = 4.0           # nats per response, for the adaptive controller
    kl_horizon: int = 5000           # responses over which beta adapts
    no_eos_penalty: float = -3.0     # in normalised reward units
    whiten_advantages: bool = True
    value_model: str = "policy"      # "policy": zero-init head on the policy; "critic": from the RM
    max_grad_norm: float = 1.0
    sample_top_k: int | None = None  # only to show a broken run: sampling no longer matches log-probs

    def __post_init__(self):
        if self.value_model not in ("policy", "critic"):
            raise ValueError(f"value_model must be 'policy' or 'critic', got {self.value_model!r}")
        if self.group_size < 1 or self.prompts_per_step % self.group_size:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                             f"group_size ({self.group_size}), which must be at least 1")
        if self.prompts_per_step % self.minibatch_size:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                             f"minibatch_size ({self.minibatch_size})")

    @staticmethod
    def preset(scale: str) -> PPOConfig:
        """The scale's settings (the ``ppo`` row of :data:`rlhf_minimal.scale.PRESETS`, where the
        choice of each is explained)."""
        return PPOConfig(**preset(scale, "ppo"))


# --------------------------------------------------------------------------- the models
class PolicyWithValue(nn.Module):
    """The policy (a copy of SFT) and its value function.

    ``value_model="policy"``: a linear value head on the policy's last hidden state, initialised
    to zero so the first values are 0 and the first advantages are the whitened returns.
    ``value_model="critic"``: a separate scalar-head model, a copy of the reward model.
    """

    def __init__(self, sft: GPT, value_model: str = "policy", reward_model: GPT | None = None):
        super().__init__()
        self.lm = copy.deepcopy(sft)
        self.value_model = value_model
        if value_model == "policy":
            self.value_head = nn.Linear(sft.config.d_model, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        else:
            if reward_model is None:
                raise ValueError("value_model='critic' needs the reward model to start from")
            self.critic = copy.deepcopy(reward_model)

    def forward(self, ids, mask):
        """Logits ``[B, T, V]`` and values ``[B, T]``."""
        logits, hidden = self.lm(ids, mask, return_hidden=True)
        if self.value_model == "policy":
            values = self.value_head(hidden).squeeze(-1)
        else:
            values = self.critic(ids, mask)
        return logits, values

    def value_parameters(self):
        return list((self.value_head if self.value_model == "policy" else self.critic).parameters())


# --------------------------------------------------------------------------- the math
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise ``x`` to mean 0, std 1 over the masked entries (zero elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def per_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """eq-ppo-reward: ``r_t = -beta (log pi(y_t) - log pi_ref(y_t))``, plus ``score`` on the last
    response token. Returns ``(rewards [B, T], kl [B, T])``; both are zero outside ``mask``."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.long().cumsum(-1) == mask.long().sum(-1, keepdim=True)) & mask.bool()
    rewards = rewards + last.to(rewards.dtype) * scores[:, None]
    return rewards, kl


def group_baseline(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """eq-group-baseline: each score minus the mean score of the *other* responses to its prompt,
    ``s_i - 1/(g-1) sum_{j != i} s_j``. ``scores`` holds ``g`` consecutive responses per prompt.

    Half of the gold score's variance lies between prompts (a refusal can score 0.3 at best, a
    fact 1.0); without this, PPO learns which prompts are easy instead of which answers are good.
    The mean of the others, not of all ``g``, keeps the baseline independent of the response
    it is subtracted from."""
    if group_size == 1:
        return scores
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    groups = scores.view(-1, group_size)
    others = (groups.sum(-1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(scores.shape)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """eq-gae: generalised advantage estimation over ``[batch, time]`` tensors.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` and ``A_t = delta_t + gamma lam A_{t+1}``, with the
    value after the last response token taken as 0 (the episode ends there). ``mask`` marks the
    response tokens, which start at column 0 and are contiguous. Returns ``(advantages, returns)``
    with ``returns = advantages + values``; both are zero outside the mask.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    T = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    returns = (advantages + values) * mask
    return advantages, returns


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """eq-ppo-clip: masked mean over response tokens of ``max(-A r, -A clip(r, 1-eps, 1+eps))``
    with ``r = exp(log pi - log pi_old)``."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return masked_mean(torch.maximum(unclipped, clipped), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """eq-value-clip: ``0.5 * max((V - R)^2, (V_clipped - R)^2)``, ``V_clipped`` kept within
    ``clip`` of the value at sampling time."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


@dataclass(frozen=True)
class PPOPieces:
    """The pieces of PPO that lab 5 has students write. The defaults are the package's own; a run
    with other pieces gets its own cache entry (:func:`~rlhf_minimal.pieces.pieces_key`)."""

    per_token_rewards: Callable = per_token_rewards  # eq-ppo-reward: (scores, logprobs, ref_logprobs,
                                                     #   mask, beta) -> (rewards, kl)
    gae: Callable = gae                              # eq-gae: (rewards, values, mask, gamma, lam)
                                                     #   -> (advantages, returns)
    policy_loss: Callable = policy_loss              # eq-ppo-clip: (logprobs, old_logprobs, advantages,
                                                     #   mask, clip_eps) -> loss
    minibatch_step: Callable | None = None           # None: ppo_update's own step; else (policy, optimizer,
                                                     #   mb, cfg, pieces, precision) -> step_stats(...)


PPO_PIECES = PPOPieces()


class FixedKL:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, kl: float, n: int) -> None:
        pass


class AdaptiveKL:
    """eq-adaptive-kl (Ziegler et al., 2019): ``beta <- beta * (1 + K_beta e)`` with the
    proportional error ``e = clip(KL / target - 1, -0.2, 0.2)`` and ``K_beta = n / horizon``."""

    def __init__(self, kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = kl_coef, target, horizon

    def update(self, kl: float, n: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon


# --------------------------------------------------------------------------- rollouts
def response_mask(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 on response tokens up to and including the first EOS, 0 after it."""
    is_eos = (response == eos_id).long()
    before_or_at_eos = (is_eos.cumsum(-1) - is_eos) == 0
    return before_or_at_eos.long()


@dataclass
class Rollout:
    """One batch of sampled responses and all the PPO update needs: ``B`` responses, prompts
    left-padded to ``P`` tokens, responses right-padded to ``N`` (``N <= max_new_tokens``)."""

    ids: torch.Tensor           # [B, P + N] prompt and response tokens
    attn: torch.Tensor          # [B, P + N] 1 on real tokens, 0 on padding (and after the first EOS)
    response: torch.Tensor      # [B, N] response tokens, PAD after the first EOS
    mask: torch.Tensor          # [B, N] 1 on response tokens up to and including the first EOS
    logprobs: torch.Tensor      # [B, N] log pi_old(y_t): the policy that sampled them, at temperature
    ref_logprobs: torch.Tensor  # [B, N] log pi_ref(y_t): the frozen SFT model
    values: torch.Tensor        # [B, N] V_old(s_t), float32
    advantages: torch.Tensor    # [B, N] eq-gae (whitened when cfg.whiten_advantages)
    returns: torch.Tensor       # [B, N] advantages + values, the value function's targets
    kl: torch.Tensor            # [B, N] log pi_old - log pi_ref on response tokens (eq-ppo-reward)
    scores: torch.Tensor        # [B] the score in the reward: rm_scores, or no_eos_penalty without EOS
    rm_scores: torch.Tensor     # [B] the reward model's normalised score
    has_eos: torch.Tensor       # [B] bool: the response ended with EOS
    texts: list[str] | None     # B decoded responses (None in a minibatch)

    @property
    def prompt_width(self) -> int:
        """``P``: the response's first token is predicted at column ``P - 1``."""
        return self.ids.size(1) - self.response.size(1)

    def minibatch(self, index: torch.Tensor) -> "Rollout":
        """The rows ``index`` of every tensor (the texts stay with the whole batch)."""
        return Rollout(**{f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "texts"},
                       texts=None)


@torch.no_grad()
def rollout(policy: PolicyWithValue, ref: GPT, rm, tokenizer, tasks: list[Task], cfg: PPOConfig,
            kl_coef: float, generator: torch.Generator, prompt_width: int | None = None,
            graphs: bool = False, pieces: PPOPieces = PPO_PIECES) -> Rollout:
    """Sample one batch and compute everything the updates need (eq-ppo-reward, eq-gae, with
    ``pieces``). ``prompt_width`` pads every batch's prompts to one width and ``graphs`` replays
    each token from a CUDA graph (see :func:`rlhf_minimal.sampling.generate`)."""
    device = next(policy.parameters()).device
    prompts = [tokenizer.encode(t.prompt) for t in tasks]
    room = policy.lm.config.max_len - max(prompt_width or 0, *(len(p) for p in prompts))
    if room < 2:
        raise ValueError(f"a prompt of {max(len(p) for p in prompts)} tokens leaves no room to answer "
                         f"in a context of {policy.lm.config.max_len}")
    prompt_ids, prompt_mask, response = generate(
        policy.lm, prompts, min(cfg.max_new_tokens, room), tokenizer.eos_id, tokenizer.pad_id,
        temperature=cfg.temperature, top_k=cfg.sample_top_k, generator=generator, min_new_tokens=0,
        graphs=graphs, prompt_width=prompt_width)
    mask = response_mask(response, tokenizer.eos_id)
    response = torch.where(mask.bool(), response, torch.full_like(response, tokenizer.pad_id))
    ids = torch.cat([prompt_ids, response], 1)
    attn = torch.cat([prompt_mask, mask], 1)
    P = prompt_ids.size(1)
    policy.eval()
    logits, values = policy(ids, attn)
    logprobs = token_logprobs(logits[:, P - 1:-1], response, cfg.temperature)
    values = values[:, P - 1:-1].float()
    ref_logprobs = token_logprobs(ref(ids, attn)[:, P - 1:-1], response, cfg.temperature)
    has_eos = ((response == tokenizer.eos_id) & mask.bool()).any(-1)
    texts = [tokenizer.decode(row) for row in response.tolist()]
    rm_scores = rm.score([t.prompt for t in tasks], texts).to(device)
    scores = torch.where(has_eos, rm_scores, torch.full_like(rm_scores, cfg.no_eos_penalty))
    rewards, kl = pieces.per_token_rewards(group_baseline(scores, cfg.group_size), logprobs, ref_logprobs,
                                           mask, kl_coef)
    advantages, returns = pieces.gae(rewards, values, mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = whiten(advantages, mask)
    return Rollout(ids, attn, response, mask, logprobs, ref_logprobs, values, advantages, returns,
                   kl, scores, rm_scores, has_eos, texts)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over response tokens: 1 is a perfect critic, 0 a useless one."""
    r, v = returns[mask.bool()], values[mask.bool()]
    var = r.var()
    return float("nan") if var == 0 else (1 - (r - v).var() / var).item()


def pad_rollout(batch: Rollout, prompt_width: int, response_width: int, pad_id: int) -> Rollout:
    """``batch`` widened to fixed sizes, so that every rollout has the same shapes (what CUDA
    graphs replay). Prompts get more left padding and responses more right padding, all masked
    out: our positions ignore padding, so the real tokens' numbers do not change (up to rounding)."""
    P, N = batch.prompt_width, batch.response.size(1)
    if P > prompt_width or N > response_width:
        raise ValueError(f"a rollout of {P} + {N} tokens does not fit {prompt_width} + {response_width}")
    left, right = prompt_width - P, response_width - N
    per_token = {name: F.pad(getattr(batch, name), (0, right), value=0)
                 for name in ("mask", "logprobs", "ref_logprobs", "values", "advantages", "returns", "kl")}
    return replace(batch, ids=F.pad(batch.ids, (left, right), value=pad_id),
                   attn=F.pad(batch.attn, (left, right), value=0),
                   response=F.pad(batch.response, (0, right), value=pad_id), **per_token)


# --------------------------------------------------------------------------- the update
@torch.no_grad()
def step_stats(loss, pg_loss, vf_loss, entropy, logprobs: torch.Tensor, mb: Rollout, cfg: PPOConfig) -> dict:
    """What one minibatch step reports, detached: its losses and entropy, and how far the new
    policy's ``logprobs`` moved from the sampling policy's: the share of clipped tokens, the
    approximate KL (k3: unbiased, never < 0) and the mean ratio."""
    mask = mb.mask.float()
    log_ratio = logprobs - mb.logprobs
    ratio = log_ratio.exp()
    return {"loss": loss.detach(), "policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(),
            "entropy": entropy.detach(),
            "clip_fraction": masked_mean(((ratio - 1).abs() > cfg.clip_eps).float(), mask),
            "approx_kl": masked_mean(ratio - 1 - log_ratio, mask), "ratio": masked_mean(ratio, mask)}


def ppo_update(policy: PolicyWithValue, optimizer, batch: Rollout, cfg: PPOConfig,
               generator: torch.Generator, step: int = 0, precision: Precision | None = None,
               guard: FiniteGuard | None = None, graphed: GraphedStep | None = None,
               pieces: PPOPieces = PPO_PIECES) -> dict:
    """``ppo_epochs`` passes of shuffled minibatches over one rollout batch: the loss
    eq-ppo-clip + vf_coef * eq-value-clip - entropy_coef * entropy, then backward, clipping and an
    optimizer step. Returns the statistics averaged over the minibatches.

    ``graphed`` (a :class:`~rlhf_minimal.graphs.GraphedStep` kept across updates by
    :func:`train_ppo`) replays ``minibatch_step`` from CUDA graphs; it computes the same step.
    ``pieces.minibatch_step``, when given (lab 5's), takes the place of ``minibatch_step``.
    """
    precision = precision or Precision(batch.ids.device)
    guard = guard or FiniteGuard("PPO", batch.ids.device)

    def minibatch_step(mb: Rollout) -> dict:
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

    own = pieces.minibatch_step  # lab 5's step, written by the student, in place of minibatch_step
    train_step = minibatch_step if own is None else lambda mb: own(policy, optimizer, mb, cfg, pieces, precision)
    train_step = train_step if graphed is None else graphed.wrap(train_step)
    policy.train()
    n, history = batch.ids.size(0), []
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=generator).to(batch.ids.device)
        for start in range(0, n, cfg.minibatch_size):
            stats = train_step(batch.minibatch(order[start:start + cfg.minibatch_size]))
            guard(stats.pop("loss"), step)
            history.append(stats)
    means = torch.stack([torch.stack([h[k] for h in history]).mean() for k in history[0]]).tolist()
    return dict(zip(history[0], means))  # one host sync for all the statistics


# --------------------------------------------------------------------------- training
def train_ppo(sft: GPT, rm, tokenizer, tasks: list[Task], cfg: PPOConfig, seed: int = 0,
              device=None, judge: GoldJudge | None = None,
              settings: RunSettings | None = None, after_batch=None,
              pieces: PPOPieces = PPO_PIECES) -> tuple[PolicyWithValue, dict]:
    """Train a policy from ``sft`` against the reward model ``rm`` on the prompts ``tasks``.

    ``rm`` is anything with ``score(prompts, responses) -> tensor`` (normalised rewards); ``judge``
    (optional) scores the sampled responses for the log. ``settings`` (precision, CUDA graphs)
    default to the device's own (:func:`rlhf_minimal.device.run_settings`). ``after_batch``
    (optional) is called as ``after_batch(batches_done, policy)`` after each update, for example to
    evaluate the policy part-way (``benchmarks/ppo_curve.py``); it must leave the policy as it found it.
    ``pieces`` (:class:`PPOPieces`) default to the package's own; lab 5 passes the student's (a
    student's minibatch step runs without CUDA graphs).

    The log holds one entry per rollout batch: reward-model score, gold score of the sampled
    responses (evaluation only, never used for training), KL to the reference, beta, entropy, clip
    fraction, approximate KL between old and new policy, mean ratio, value loss, explained
    variance, response length and the share of responses without EOS.
    """
    if not tasks:
        raise ValueError("PPO needs at least one prompt")
    settings = settings or RunSettings(pick_device(device))
    device = settings.device
    generator = set_seed(seed)
    # sampling draws its noise on the device: a CPU generator cannot feed CUDA sampling
    sampler = torch.Generator(device=device).manual_seed(seed)
    precision, guard = Precision(device, settings.precision), FiniteGuard("PPO", device)
    ref = copy.deepcopy(sft).to(device).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    policy = PolicyWithValue(sft, cfg.value_model,
                             rm.model if cfg.value_model == "critic" else None).to(device)
    value_ids = {id(p) for p in policy.value_parameters()}
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in policy.parameters() if id(p) not in value_ids], "lr": cfg.lr},
         {"params": policy.value_parameters(), "lr": cfg.value_lr}], betas=(0.9, 0.95), weight_decay=0.0,
        fused=True if device.type == "cuda" else None)
    # CUDA graphs (off on the CPU): every rollout padded to one shape, so one recorded step serves all
    graphed = None
    if graph_training(settings, precision) and pieces.minibatch_step is None:
        optimizer, graphed = make_graph_optimizer(optimizer), GraphedStep(None, device)
    longest_prompt = max(len(tokenizer.encode(t.prompt)) for t in tasks)
    fits = longest_prompt + cfg.max_new_tokens <= policy.lm.config.max_len
    prompt_width = longest_prompt if fits and settings.cuda_graphs else None
    fixed = (longest_prompt, cfg.max_new_tokens) if fits and graphed is not None else None
    controller = (AdaptiveKL(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
                  else FixedKL(cfg.kl_coef))
    keys = ("rm_score", "gold_score", "kl", "kl_coef", "entropy", "clip_fraction", "approx_kl",
            "ratio", "policy_loss", "value_loss", "explained_variance", "length", "no_eos")
    log = {k: [] for k in ("step", *keys)}
    order = torch.randperm(len(tasks), generator=generator).tolist()
    cursor, start = 0, time.time()
    bar = progress(total=cfg.steps, desc="PPO")
    for step in range(cfg.steps):
        batch_tasks = []
        while len(batch_tasks) < cfg.prompts_per_step:
            if cursor == len(order):
                order, cursor = torch.randperm(len(tasks), generator=generator).tolist(), 0
            batch_tasks += [tasks[order[cursor]]] * cfg.group_size  # a group's members side by side
            cursor += 1
        batch = rollout(policy, ref, rm, tokenizer, batch_tasks, cfg, controller.value, sampler,
                        prompt_width, settings.cuda_graphs, pieces)
        update_batch = batch if fixed is None else pad_rollout(batch, *fixed, tokenizer.pad_id)
        stats = ppo_update(policy, optimizer, update_batch, cfg, generator, step, precision, guard, graphed,
                           pieces)
        kl_per_response = batch.kl.sum(-1).mean().item()
        gold = ([judge.score(t, r).score for t, r in zip(batch_tasks, batch.texts)]
                if judge is not None else [float("nan")])
        row = {"rm_score": batch.scores.mean().item(), "gold_score": sum(gold) / len(gold),
               "kl": kl_per_response, "kl_coef": controller.value, **stats,
               "explained_variance": explained_variance(batch.values, batch.returns, batch.mask),
               "length": batch.mask.sum(-1).float().mean().item(),
               "no_eos": 1.0 - batch.has_eos.float().mean().item()}
        controller.update(kl_per_response, len(batch_tasks))
        log["step"].append(step)
        for k in keys:
            log[k].append(round(float(row[k]), 5))
        bar.update(1)
        if after_batch is not None:
            after_batch(step + 1, policy)
            policy.train()
        bar.set_postfix(rm=f"{row['rm_score']:.2f}", gold=f"{row['gold_score']:.2f}", kl=f"{kl_per_response:.2f}")
    guard.close()
    bar.close()
    log["seconds"] = round(time.time() - start, 1)
    log["precision"] = precision.name
    return policy.eval(), log


REWARD_SOURCES = ("model", "likelihood")


def ppo_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
               size: str = "medium", reward: dict | None = None, reward_source: str = "model",
               pieces: PPOPieces = PPO_PIECES, **overrides):
    """The PPO policy for ``scale`` and ``seed`` (cached), trained from the cached SFT and reward
    models on the RL prompts. ``overrides`` change fields of :class:`PPOConfig`. ``size`` (small,
    medium, large) starts from the SFT model of that size; every size trains against the same
    (medium) reward model, as InstructGPT used one reward model for all its policy sizes.
    ``reward`` changes fields of the reward model's :class:`~rlhf_minimal.reward.RewardConfig`
    (for example ``{"priority": HELPFUL_FIRST}`` or ``{"max_prompts": 100}``).
    ``reward_source="likelihood"`` trains the sharpening control instead: PPO against the SFT
    model's own likelihood (:class:`LikelihoodReward`), with everything else the same.
    ``pieces`` (:class:`PPOPieces`) train with other functions than the package's, lab 5's
    student's: the run is cached under its own key and evaluated like the package's.

    Returns ``(world, tokenizer, policy GPT, info)``; ``info`` holds the training log and the
    evaluation on held-out prompts: SFT, PPO, best-of-4 and best-of-16, sampled and greedy (gold
    score per family, hallucination rate, KL to SFT, head-to-head win rates).
    """
    from .preference import sample_k
    from .reward import reward_model
    from .sft import sft_model

    if reward_source not in REWARD_SOURCES:
        raise ValueError(f"reward_source must be one of {', '.join(REWARD_SOURCES)}, got {reward_source!r}")
    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device, size=size)
    _, _, rm, rm_info = reward_model(scale, seed, device=device, **(reward or {}))
    cfg = PPOConfig(**{**asdict(PPOConfig.preset(scale)), **overrides})
    stage_cfg = {"scale": scale, "seed": seed, "size": size, "world": asdict(world.config), "ppo": asdict(cfg),
                 "reward_source": reward_source, "reward": config_json(rm_info["config"])}
    if pieces_key(pieces, PPO_PIECES):
        stage_cfg["pieces"] = pieces_key(pieces, PPO_PIECES)
    settings = run_settings(device)

    def build(folder):
        judge = GoldJudge(world)
        reward = rm
        if reward_source == "likelihood":
            fit = world.splits["rl"][:256]
            samples = [r[0] for r in sample_k(sft, tokenizer, fit, 2, cfg.temperature, cfg.max_new_tokens, seed)]
            reward = LikelihoodReward(sft, tokenizer).fit_normalisation([t.prompt for t in fit], samples)
        policy, log = train_ppo(sft, reward, tokenizer, list(world.splits["rl"]), cfg, seed,
                                judge=judge, settings=settings, pieces=pieces)
        evaluation = evaluate_ppo(policy.lm, sft, rm, tokenizer, world, cfg, seed)
        save_checkpoint(folder, policy.lm, {"stage": stage_cfg}, log=log, evaluation=evaluation)

    model, folder = cached_model("ppo", stage_cfg, build, settings, fresh)
    info = {"log": read_json(folder, "log"), "evaluation": read_json(folder, "evaluation"), "config": cfg}
    return world, tokenizer, model, info


