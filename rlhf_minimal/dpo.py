"""Direct preference optimisation (Rafailov et al., 2023): the policy learns from the comparisons
themselves, with no reward model and no sampling during training.

The KL-regularised objective that PPO chases (eq-ppo-objective) has a closed-form optimum,
``pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)``. Solved for the reward,
``r(x, y) = beta log pi*(y|x) / pi_ref(y|x) + beta log Z(x)``; put into the Bradley-Terry loss of
the reward model (eq-rm-loss) the ``Z(x)`` of the two responses cancels, and what is left is a
loss on the policy alone (eq-dpo-loss)::

    L = -log sigmoid( beta [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

``beta log pi(y|x) / pi_ref(y|x)`` is the policy's *implicit reward*. Our simplifications: the
sequence log-probability sums the response tokens and EOS at temperature 1; pairs of one prompt
share a batch and every prompt weighs the same, as in our reward model; the reference log-probs
are computed once before training (the reference is frozen), not at every step.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import RunSettings, pick_device, run_settings
from .evaluate import against_sft, compare_policies, win_share
from .judge import GoldJudge
from .model import GPT
from .preference import group_by_prompt, pair_indices, prompt_batches, validate_comparisons
from .scale import current_scale, preset
from .tokenizer import Tokenizer
from .train import FiniteGuard, Precision, cosine_lr, make_optimizer, progress, set_lr, set_seed


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1                # strength of the pull back to the reference (as in PPO's KL)
    epochs: int = 2
    prompts_per_batch: int = 8
    lr: float = 3e-5                 # at 1e-4 the policy drifts 3.9 nats from SFT and its greedy answers get worse
    warmup: int = 10
    batch_size: int = 128            # sequences per forward pass when computing reference log-probs
    temperature: float = 1.0         # the evaluation's sampling temperature and response length:
    max_new_tokens: int = 40         # PPO's (PPOConfig), so DPO and PPO are compared alike

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}: DPO divides the reward by it")

    @staticmethod
    def preset(scale: str) -> "DPOConfig":
        return DPOConfig(**preset(scale, "dpo"))


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, weights: torch.Tensor | None = None):
    """eq-dpo-loss on sequence log-probabilities (one entry per pair).

    Returns ``(loss, chosen_rewards, rejected_rewards)``; the rewards are the implicit rewards
    ``beta (log pi - log pi_ref)``, detached, for logging. ``weights`` (one per pair) makes the
    loss a weighted mean, as in :func:`rlhf_minimal.reward.pairwise_loss`.
    """
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    losses = -F.logsigmoid(chosen - rejected)
    loss = losses.mean() if weights is None else (weights * losses).sum() / weights.sum()
    return loss, chosen.detach(), rejected.detach()


def response_logprobs(model: GPT, tokenizer: Tokenizer, prompts: list[str], responses: list[str],
                      device=None) -> torch.Tensor:
    """``log pi(response + EOS | prompt)`` for each pair: the sum of the response tokens' log-probs
    (temperature 1). A pair longer than the context is refused, as in SFT."""
    from .sft import encode_demonstrations

    device = device or next(model.parameters()).device
    inputs, targets = encode_demonstrations(
        tokenizer, [{"prompt": p, "completion": r} for p, r in zip(prompts, responses)], model.config.max_len)
    inputs, targets = inputs.to(device), targets.to(device)
    mask = (inputs != tokenizer.pad_id) | (targets != -100)
    logits = model(inputs, mask.long()).float()
    keep = targets != -100
    picked = torch.gather(F.log_softmax(logits, -1), -1, targets.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * keep).sum(-1)


def train_dpo(sft: GPT, tokenizer: Tokenizer, rows, cfg: DPOConfig, seed: int = 0,
              device=None, settings: RunSettings | None = None) -> tuple[GPT, dict]:
    """Train a copy of ``sft`` with eq-dpo-loss on comparison ``rows`` (with ``prompt_id``); the
    frozen ``sft`` is the reference.

    The log holds, per step: the loss, the implicit reward margin (chosen minus rejected) and the
    share of pairs whose implicit reward puts the chosen response first. ``settings`` (precision)
    default to the device's own (:func:`rlhf_minimal.device.run_settings`).
    """
    validate_comparisons(rows)
    settings = settings or RunSettings(pick_device(device))
    device = settings.device
    set_seed(seed)
    groups = group_by_prompt(rows)
    ref = copy.deepcopy(sft).to(device).eval()
    with torch.no_grad():  # the reference never changes: its log-probs once, up front
        for g in groups:
            g["ref"] = response_logprobs(ref, tokenizer, [g["prompt"]] * len(g["responses"]),
                                         g["responses"], device)
    del ref
    policy = copy.deepcopy(sft).to(device).train()
    optimizer = make_optimizer(policy, cfg.lr, weight_decay=0.0)
    precision, guard = Precision(device, settings.precision), FiniteGuard("DPO", device)
    total = -(-len(groups) // cfg.prompts_per_batch) * cfg.epochs
    log = {"step": [], "loss": [], "margin": [], "accuracy": [], "n_prompts": len(groups), "n_pairs": len(rows)}
    stats = []
    rng = random.Random(seed)
    step, start = 0, time.time()
    bar = progress(total=total, desc="DPO")
    for _ in range(cfg.epochs):
        for batch in prompt_batches(groups, cfg.prompts_per_batch, rng):
            set_lr(optimizer, cosine_lr(step, total, cfg.lr, cfg.warmup))
            prompts = [g["prompt"] for g in batch for _ in g["responses"]]
            responses = [r for g in batch for r in g["responses"]]
            chosen, rejected, weights = (t.to(device) for t in pair_indices(batch))
            ref_lp = torch.cat([g["ref"] for g in batch])
            with precision.autocast():
                lp = response_logprobs(policy, tokenizer, prompts, responses, device)
                loss, r_c, r_r = dpo_loss(lp[chosen], lp[rejected], ref_lp[chosen], ref_lp[rejected],
                                          cfg.beta, weights)
            guard(loss, step)
            optimizer.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.clip_grad_norm(policy, optimizer, 1.0)
            precision.step(optimizer)
            stats.append(torch.stack([loss.detach().float(), (r_c - r_r).mean(), win_share(r_c, r_r)]))
            log["step"].append(step)
            step += 1
            bar.update(1)
    guard.close()
    bar.close()
    if stats:
        loss, margin, acc = torch.stack(stats).T.tolist()
        log["loss"], log["margin"], log["accuracy"] = ([round(v, 4) for v in xs] for xs in (loss, margin, acc))
    log["seconds"] = round(time.time() - start, 1)
    log["precision"] = precision.name
    return policy.eval(), log


@torch.no_grad()
def implicit_reward_accuracy(policy: GPT, ref: GPT, tokenizer: Tokenizer, rows, beta: float) -> float:
    """Share of comparisons whose implicit reward ranks the chosen response first (ties half):
    DPO's counterpart of the reward model's pairwise accuracy."""
    prompts = [r["prompt"] for r in rows]
    gaps = []
    for start in range(0, len(rows), 128):
        p = prompts[start:start + 128]
        c = [r["chosen"] for r in rows[start:start + 128]]
        j = [r["rejected"] for r in rows[start:start + 128]]
        gaps.append(beta * ((response_logprobs(policy, tokenizer, p, c) - response_logprobs(ref, tokenizer, p, c))
                            - (response_logprobs(policy, tokenizer, p, j) - response_logprobs(ref, tokenizer, p, j))))
    gap = torch.cat(gaps)
    return round(win_share(gap, torch.zeros_like(gap)).item(), 4)


def dpo_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None, **overrides):
    """The DPO policy for ``scale`` and ``seed`` (cached), trained from the cached SFT model on the
    reward model's training comparisons (the very pairs the reward model learned from).

    Returns ``(world, tokenizer, policy GPT, info)``; ``info`` holds the training log and the
    evaluation on held-out prompts (SFT and DPO, sampled and greedy, as for PPO) plus the implicit
    reward's accuracy on the held-out comparisons.
    """
    from datasets import load_from_disk

    from .reward import reward_model
    from .sft import sft_model

    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    _, _, _, rm_info = reward_model(scale, seed, device=device)
    cfg = DPOConfig(**{**asdict(DPOConfig.preset(scale)), **overrides})
    stage_cfg = {"scale": scale, "seed": seed, "world": asdict(world.config), "dpo": asdict(cfg),
                 "reward": config_json(rm_info["config"])}
    settings = run_settings(device)

    def build(folder):
        rows = load_from_disk(rm_info["comparisons"]).to_list()
        held = load_from_disk(rm_info["heldout_comparisons"]).to_list()
        policy, log = train_dpo(sft, tokenizer, rows, cfg, seed, settings=settings)
        tasks = [t for t in world.splits["eval"] if t.lang == "a"]
        result = compare_policies({"sft": sft, "dpo": policy}, GoldJudge(world), tokenizer, tasks, sft,
                                  cfg.temperature, cfg.max_new_tokens, seed + 100)
        evaluation = {"n_prompts": len(tasks), "families": [t.family for t in tasks],
                      "heldout_accuracy": implicit_reward_accuracy(policy, sft, tokenizer, held, cfg.beta),
                      "train_accuracy": implicit_reward_accuracy(policy, sft, tokenizer, rows[:2000], cfg.beta),
                      **against_sft(result, tasks)}
        save_checkpoint(folder, policy, {"stage": stage_cfg}, log=log, evaluation=evaluation)

    model, folder = cached_model("dpo", stage_cfg, build, settings, fresh)
    info = {"log": read_json(folder, "log"), "evaluation": read_json(folder, "evaluation"), "config": cfg}
    return world, tokenizer, model, info
