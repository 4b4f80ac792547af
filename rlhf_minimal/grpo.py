"""GRPO and RLOO: policy-gradient RLHF without a value model (chapter 8).

PPO (chapter 5) learns a value function to tell a good token from a lucky one. Both methods here
drop it and compare each response with the *other responses to the same prompt* instead: every
rollout batch holds ``group_size`` samples per prompt, side by side (as :func:`rlhf_minimal.ppo.train_ppo`
already samples them).

* **GRPO** (Shao et al., 2024, DeepSeekMath): the advantage of response ``i`` is its score
  normalised within its group, ``A_i = (s_i - mean_group) / (std_group + eps)`` (eq-group-advantage),
  the same for all its tokens; the loss is PPO's clipped surrogate plus ``beta`` times the k3
  estimate of KL(pi_theta || pi_ref) on every response token (eq-grpo, eq-k3). The KL sits in the
  *loss*, not in the reward.
* **RLOO** (Ahmadian et al., 2024): REINFORCE on the whole response, with the reward
  ``R_i = s_i - beta sum_t (log pi_old(y_t) - log pi_ref(y_t))`` (the KL in the *reward*, as in
  PPO) and the leave-one-out baseline, the mean reward of the other ``g - 1`` responses to the
  prompt (eq-rloo): :func:`rlhf_minimal.ppo.group_baseline`.

Sampling, log-probs and the reference come from PPO's :func:`~rlhf_minimal.ppo.rollout` (its
value head is created but neither used nor trained; its advantages are replaced by the ones
here). Our simplifications, stated up front: the GRPO loss averages over all response tokens of
the minibatch (as :func:`~rlhf_minimal.ppo.policy_loss` does), not per response then per group as
in the paper, so a long response does not weigh less per token; RLOO takes one pass of
minibatch steps over each batch, so all but the first step are slightly off-policy, as in PPO's
first epoch.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace

import torch

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import RunSettings, pick_device, run_settings
from .evaluate import against_sft, compare_policies
from .judge import GoldJudge
from .model import GPT
from .ppo import PolicyWithValue, Rollout, group_baseline, masked_mean, policy_loss, rollout
from .sampling import token_logprobs
from .scale import current_scale, preset
from .train import FiniteGuard, progress, set_seed
from .world import Task

ALGORITHMS = ("grpo", "rloo")


@dataclass(frozen=True)
class GRPOConfig:
    algorithm: str = "grpo"          # "grpo": group-normalised advantages, KL in the loss;
                                     # "rloo": leave-one-out baseline, REINFORCE, KL in the reward
    steps: int = 40                  # rollout batches (the ppo row's, so both see the same samples)
    prompts_per_step: int = 64       # responses sampled per rollout batch
    group_size: int = 4              # responses per prompt: the group that replaces the value model
    max_new_tokens: int = 40
    temperature: float = 1.0
    epochs: int = 4                  # GRPO: passes over each rollout batch (RLOO always takes one)
    minibatch_size: int = 16
    lr: float = 3e-5
    clip_eps: float = 0.2            # GRPO's clipped surrogate, as PPO's
    kl_coef: float = 0.04            # beta: GRPO's weight of the k3 KL in the loss (DeepSeekMath's
                                     # 0.04); RLOO's per-response KL in the reward
    eps: float = 1e-4                # in the group std's denominator: a group that all scored
                                     # the same gets advantage 0, not a division by zero
    no_eos_penalty: float = -3.0     # the score of a response that never ended (normalised units)
    max_grad_norm: float = 1.0
    # fields rollout() reads; fixed here: no value model, no GAE, no PPO-style whitening
    sample_top_k: int | None = None
    gamma: float = 1.0
    lam: float = 1.0
    whiten_advantages: bool = False

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.group_size < 2 or self.prompts_per_step % self.group_size:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                             f"group_size ({self.group_size}), which must be at least 2: a group of "
                             "one has nothing to compare with")
        if self.prompts_per_step % self.minibatch_size:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                             f"minibatch_size ({self.minibatch_size})")

    @staticmethod
    def preset(scale: str, algorithm: str = "grpo") -> "GRPOConfig":
        """The scale's rollout budget, from the ``ppo`` row of :data:`rlhf_minimal.scale.PRESETS`
        (batches, responses per batch, group size, response length), so that GRPO, RLOO and PPO
        sample exactly as many responses; the group size is at least 2. PPO's ``kl_coef`` is kept
        for RLOO (KL in the reward, like PPO's); GRPO uses its own (KL in the loss)."""
        row = preset(scale, "ppo")
        shared = {k: row[k] for k in ("steps", "prompts_per_step", "max_new_tokens", "minibatch_size",
                                      "temperature", "lr", "clip_eps", "no_eos_penalty") if k in row}
        shared["group_size"] = max(2, row.get("group_size", 4))
        if algorithm == "rloo" and "kl_coef" in row:
            shared["kl_coef"] = row["kl_coef"]
        if algorithm == "rloo" and "kl_coef" not in row:
            shared["kl_coef"] = 0.1  # PPOConfig's default beta
        return GRPOConfig(algorithm=algorithm, **shared)


# --------------------------------------------------------------------------- the math
def group_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """eq-group-advantage: ``(s_i - mean_group) / (std_group + eps)`` for ``g`` consecutive
    responses per prompt; the std is the sample standard deviation (``g - 1`` in the
    denominator). A group whose scores are all equal gets advantage 0."""
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    groups = scores.view(-1, group_size)
    centred = groups - groups.mean(-1, keepdim=True)
    return (centred / (groups.std(-1, keepdim=True) + eps)).reshape(scores.shape)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """eq-k3: per token, ``pi_ref/pi - log(pi_ref/pi) - 1`` on the sampled token: an unbiased
    estimate of KL(pi_theta || pi_ref) for samples of pi_theta, never negative."""
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float, kl_coef: float):
    """eq-grpo: PPO's clipped surrogate (eq-ppo-clip) with the group advantages, plus ``beta``
    times the k3 KL to the reference, both averaged over response tokens. Returns
    ``(loss, surrogate, kl)``; ``advantages`` is per token (each response's value repeated)."""
    surrogate = policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps)
    kl = masked_mean(k3_kl(logprobs, ref_logprobs), mask)
    return surrogate + kl_coef * kl, surrogate, kl


def rloo_advantages(scores: torch.Tensor, kl: torch.Tensor, group_size: int, kl_coef: float) -> torch.Tensor:
    """eq-rloo: the reward ``R_i = s_i - beta sum_t kl_t`` minus the mean reward of the other
    responses to the same prompt (:func:`rlhf_minimal.ppo.group_baseline`). ``kl`` is ``[B, N]``,
    zero outside the response."""
    return group_baseline(scores - kl_coef * kl.sum(-1), group_size)


def reinforce_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE on whole responses: ``-sum_i A_i sum_t log pi(y_t)``, divided by the number of
    response tokens (so its gradient at the sampling policy equals eq-ppo-clip's)."""
    return -(advantages[:, None] * logprobs * mask).sum() / mask.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- the updates
def grpo_update(policy: GPT, optimizer, batch: Rollout, cfg: GRPOConfig, generator: torch.Generator,
                step: int = 0, guard: FiniteGuard | None = None) -> dict:
    """``epochs`` passes of shuffled minibatches over one rollout batch (``batch.advantages``
    holds the group advantages per token): eq-grpo, backward, clipping, step."""
    guard = guard or FiniteGuard("GRPO", batch.ids.device)
    policy.train()
    n, history = batch.ids.size(0), []
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator).to(batch.ids.device)
        for start in range(0, n, cfg.minibatch_size):
            mb = batch.minibatch(order[start:start + cfg.minibatch_size])
            P, mask = mb.prompt_width, mb.mask.float()
            logprobs = token_logprobs(policy(mb.ids, mb.attn)[:, P - 1:-1].float(), mb.response, cfg.temperature)
            loss, surrogate, kl = grpo_loss(logprobs, mb.logprobs, mb.ref_logprobs, mb.advantages,
                                            mask, cfg.clip_eps, cfg.kl_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            guard(loss.detach(), step)
            ratio = torch.exp(logprobs - mb.logprobs).detach()
            history.append({"policy_loss": surrogate.detach(), "k3_kl": kl.detach(),
                            "clip_fraction": masked_mean(((ratio - 1).abs() > cfg.clip_eps).float(), mask)})
    return {k: torch.stack([h[k] for h in history]).mean().item() for k in history[0]}


def rloo_update(policy: GPT, optimizer, batch: Rollout, cfg: GRPOConfig, generator: torch.Generator,
                step: int = 0, guard: FiniteGuard | None = None) -> dict:
    """One pass of shuffled minibatches over one rollout batch (``batch.advantages`` holds each
    response's leave-one-out advantage in column 0): REINFORCE, backward, clipping, step."""
    guard = guard or FiniteGuard("RLOO", batch.ids.device)
    policy.train()
    n, history = batch.ids.size(0), []
    order = torch.randperm(n, generator=generator).to(batch.ids.device)
    for start in range(0, n, cfg.minibatch_size):
        mb = batch.minibatch(order[start:start + cfg.minibatch_size])
        P, mask = mb.prompt_width, mb.mask.float()
        logprobs = token_logprobs(policy(mb.ids, mb.attn)[:, P - 1:-1].float(), mb.response, cfg.temperature)
        loss = reinforce_loss(logprobs, mb.advantages[:, 0], mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()
        guard(loss.detach(), step)
        history.append({"policy_loss": loss.detach()})
    return {k: torch.stack([h[k] for h in history]).mean().item() for k in history[0]}


# --------------------------------------------------------------------------- training
def with_advantages(batch: Rollout, cfg: GRPOConfig) -> Rollout:
    """``batch`` with its advantages replaced by the algorithm's: GRPO's group advantage on every
    response token, or RLOO's per-response advantage in column 0 (the rest zero)."""
    mask = batch.mask.float()
    if cfg.algorithm == "grpo":
        per_response = group_advantages(batch.scores, cfg.group_size, cfg.eps)
        return replace(batch, advantages=per_response[:, None] * mask)
    per_response = rloo_advantages(batch.scores, batch.kl, cfg.group_size, cfg.kl_coef)
    advantages = torch.zeros_like(mask)
    advantages[:, 0] = per_response
    return replace(batch, advantages=advantages)


def train_grpo(sft: GPT, reward, tokenizer, tasks: list[Task], cfg: GRPOConfig, seed: int = 0,
               device=None, judge: GoldJudge | None = None, settings: RunSettings | None = None,
               after_batch=None) -> tuple[GPT, dict]:
    """Train a copy of ``sft`` with GRPO or RLOO (``cfg.algorithm``) against ``reward`` (anything
    with ``score(prompts, responses) -> tensor``: the reward model or a
    :class:`~rlhf_minimal.verifier.Verifier`) on the prompts ``tasks``, ``group_size`` samples per
    prompt. ``judge`` (optional) scores the samples for the log only. ``after_batch(batches_done,
    policy)`` (optional) runs after each update and must leave the policy as it found it.

    The log holds one entry per rollout batch: the reward's mean score, gold score of the samples,
    KL to the reference (sum over tokens of log pi_old - log pi_ref, per response), the share of
    groups whose scores all tie (they teach nothing), response length and the update's statistics.
    """
    if not tasks:
        raise ValueError(f"{cfg.algorithm.upper()} needs at least one prompt")
    settings = settings or RunSettings(pick_device(device))
    device = settings.device
    generator = set_seed(seed)
    sampler = torch.Generator(device=device).manual_seed(seed)
    guard = FiniteGuard(cfg.algorithm.upper(), device)
    ref = copy.deepcopy(sft).to(device).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    holder = PolicyWithValue(sft).to(device)  # rollout() samples through it; only .lm trains
    policy = holder.lm
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    update = grpo_update if cfg.algorithm == "grpo" else rloo_update
    # GRPO's KL is in the loss, so the rollout's reward carries none; RLOO's is in the reward
    rollout_beta = 0.0 if cfg.algorithm == "grpo" else cfg.kl_coef
    log = {k: [] for k in ("step", "score", "gold_score", "kl", "tied_groups", "length", "no_eos",
                           "policy_loss", *(("k3_kl", "clip_fraction") if cfg.algorithm == "grpo" else ()))}
    order = torch.randperm(len(tasks), generator=generator).tolist()
    cursor, start = 0, time.time()
    bar = progress(total=cfg.steps, desc=cfg.algorithm.upper())
    for step in range(cfg.steps):
        batch_tasks = []
        while len(batch_tasks) < cfg.prompts_per_step:
            if cursor == len(order):
                order, cursor = torch.randperm(len(tasks), generator=generator).tolist(), 0
            batch_tasks += [tasks[order[cursor]]] * cfg.group_size
            cursor += 1
        batch = with_advantages(rollout(holder, ref, reward, tokenizer, batch_tasks, cfg, rollout_beta,
                                        sampler), cfg)
        stats = update(policy, optimizer, batch, cfg, generator, step, guard)
        groups = batch.scores.view(-1, cfg.group_size)
        gold = ([judge.score(t, r).score for t, r in zip(batch_tasks, batch.texts)]
                if judge is not None else [float("nan")])
        row = {"score": batch.scores.mean().item(), "gold_score": sum(gold) / len(gold),
               "kl": (batch.logprobs - batch.ref_logprobs).mul(batch.mask).sum(-1).mean().item(),
               "tied_groups": (groups.max(-1).values == groups.min(-1).values).float().mean().item(),
               "length": batch.mask.sum(-1).float().mean().item(),
               "no_eos": 1.0 - batch.has_eos.float().mean().item(), **stats}
        log["step"].append(step)
        for k in log:
            if k != "step":
                log[k].append(round(float(row[k]), 5))
        bar.update(1)
        bar.set_postfix(score=f"{row['score']:.2f}", gold=f"{row['gold_score']:.2f}", kl=f"{row['kl']:.2f}")
        if after_batch is not None:
            after_batch(step + 1, policy)
            policy.train()
    guard.close()
    bar.close()
    log["seconds"] = round(time.time() - start, 1)
    return policy.eval(), log


def evaluate_against_sft(policy: GPT, sft: GPT, tokenizer, world, cfg, seed: int, name: str) -> dict:
    """SFT and ``policy`` (as ``name``) on the held-out evaluation prompts (language A), decoded
    as :func:`rlhf_minimal.evaluate.evaluate_ppo` decodes them (``cfg``'s temperature and response
    length, sampled and greedy, seed + 100), with the head-to-head against SFT; best-of-n is in
    the PPO stage's evaluation, drawn from the same SFT model."""
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    result = compare_policies({"sft": sft, name: policy}, GoldJudge(world), tokenizer, tasks, sft,
                              cfg.temperature, cfg.max_new_tokens, seed + 100)
    return {"n_prompts": len(tasks), "families": [t.family for t in tasks], **against_sft(result, tasks)}


REWARDS = ("model", "verifier")


def grpo_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
                reward: str = "model", algorithm: str = "grpo", **overrides):
    """The GRPO (or RLOO, ``algorithm="rloo"``) policy for ``scale`` and ``seed`` (cached),
    trained from the cached SFT model on the RL prompts with the PPO preset's rollout budget.

    ``reward="model"``: against the cached reward model, on every RL prompt, as PPO.
    ``reward="verifier"``: against :class:`~rlhf_minimal.verifier.Verifier` (1 for an answer its
    checks accept, 0 otherwise; an unfinished response scores 0), on the RL prompts of the families
    it can check; the others are left out of training and counted in ``info["left_out"]``.
    ``overrides`` change fields of :class:`GRPOConfig`.

    Returns ``(world, tokenizer, policy GPT, info)`` with the training log and the evaluation on
    the held-out prompts (:func:`evaluate_against_sft`).
    """
    from .reward import reward_model
    from .sft import sft_model
    from .verifier import Verifier

    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    _, _, rm, rm_info = reward_model(scale, seed, device=device)
    defaults = asdict(GRPOConfig.preset(scale, algorithm))
    if reward == "verifier":
        defaults["no_eos_penalty"] = 0.0  # an unfinished answer is simply not accepted
    cfg = GRPOConfig(**{**defaults, "algorithm": algorithm, **overrides})
    stage_cfg = {"scale": scale, "seed": seed, "world": asdict(world.config), "grpo": asdict(cfg),
                 "reward_source": reward, "reward": config_json(rm_info["config"])}
    settings = run_settings(device)

    def build(folder):
        judge = GoldJudge(world)
        tasks, score, left_out = list(world.splits["rl"]), rm, {}
        if reward == "verifier":
            score = Verifier(world)
            tasks, left_out = score.split(tasks)
        policy, log = train_grpo(sft, score, tokenizer, tasks, cfg, seed, judge=judge, settings=settings)
        log["n_prompts"], log["left_out"] = len(tasks), left_out
        evaluation = evaluate_against_sft(policy, sft, tokenizer, world, cfg, seed, algorithm)
        save_checkpoint(folder, policy, {"stage": stage_cfg}, log=log, evaluation=evaluation)

    model, folder = cached_model("grpo", stage_cfg, build, settings, fresh)
    log = read_json(folder, "log")
    info = {"log": log, "evaluation": read_json(folder, "evaluation"), "config": cfg,
            "left_out": log["left_out"]}
    return world, tokenizer, model, info


def rloo_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
                reward: str = "model", **overrides):
    """The RLOO policy (:func:`grpo_policy` with ``algorithm="rloo"``)."""
    return grpo_policy(scale, seed, fresh, device, reward, "rloo", **overrides)
