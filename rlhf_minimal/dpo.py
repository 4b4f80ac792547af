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

:class:`DPOPieces` holds what lab 11 has students write, the loss and the training loop
(:func:`dpo_loop`); by default the package's own, passed down from :func:`dpo_policy`.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import RunSettings, pick_device, run_settings
from .evaluate import against_sft, compare_policies, win_share
from .judge import GoldJudge
from .model import GPT
from .pieces import pieces_key
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


def implicit_reward(policy_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, beta: float) -> torch.Tensor:
    """eq-dpo-reward without its ``beta log Z(x)`` (the same for every response to a prompt):
    ``beta (log pi(y|x) - log pi_ref(y|x))``, one per response."""
    return beta * (policy_logprobs - ref_logprobs)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """eq-dpo-loss on sequence log-probabilities (one entry per pair): the mean over pairs of
    ``-log sigmoid(implicit reward of the chosen - implicit reward of the rejected)``.
    ``weights`` (one per pair) makes it a weighted mean, sum(w l) / sum(w), as in
    :func:`rlhf_minimal.reward.pairwise_loss`.
    """
    chosen = implicit_reward(policy_chosen, ref_chosen, beta)
    rejected = implicit_reward(policy_rejected, ref_rejected, beta)
    losses = -F.logsigmoid(chosen - rejected)
    return losses.mean() if weights is None else (weights * losses).sum() / weights.sum()


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


@dataclass
class DPOBatch:
    """One batch of whole prompts: their responses one after the other, and the pairs among them."""

    prompts: list[str]          # one per response
    responses: list[str]        # the batch's responses, prompt after prompt
    chosen: torch.Tensor        # [pairs] position of each pair's chosen response in ``responses``
    rejected: torch.Tensor      # [pairs] position of its rejected response
    weights: torch.Tensor       # [pairs] 1 / (prompts * the prompt's pairs): every prompt weighs the same
    ref_logprobs: torch.Tensor  # [responses] log pi_ref(response | prompt), computed once


def dpo_batch(groups: list[dict], device) -> DPOBatch:
    """A :class:`DPOBatch` of :func:`group_by_prompt` groups that carry their reference log-probs (``ref``)."""
    chosen, rejected, weights = (t.to(device) for t in pair_indices(groups))
    return DPOBatch([g["prompt"] for g in groups for _ in g["responses"]],
                    [r for g in groups for r in g["responses"]], chosen, rejected, weights,
                    torch.cat([g["ref"] for g in groups]))


def dpo_loop(policy: GPT, optimizer, tokenizer: Tokenizer, batches: list[DPOBatch], cfg: DPOConfig,
             pieces: "DPOPieces", precision: Precision, record) -> None:
    """The training loop over the comparisons: for each batch, the learning rate of the schedule,
    the policy's sequence log-probabilities, eq-dpo-loss (``pieces.dpo_loss``), ``record(step, loss,
    logprobs, batch)`` (which logs the step and stops on NaN), backward, clipping and a step."""
    for step, b in enumerate(batches):
        set_lr(optimizer, cosine_lr(step, len(batches), cfg.lr, cfg.warmup))
        with precision.autocast():
            logprobs = response_logprobs(policy, tokenizer, b.prompts, b.responses)
            loss = pieces.dpo_loss(logprobs[b.chosen], logprobs[b.rejected], b.ref_logprobs[b.chosen],
                                   b.ref_logprobs[b.rejected], cfg.beta, b.weights)
        record(step, loss, logprobs, b)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.clip_grad_norm(policy, optimizer, 1.0)
        precision.step(optimizer)


@dataclass(frozen=True)
class DPOPieces:
    """The pieces of DPO that lab 11 has students write. The defaults are the package's own; a run
    with other pieces gets its own cache entry (:func:`~rlhf_minimal.pieces.pieces_key`)."""

    dpo_loss: Callable = dpo_loss        # eq-dpo-loss: (pc, pr, rc, rr, beta, weights=None) -> loss
    training_loop: Callable = dpo_loop   # (policy, optimizer, tokenizer, batches, cfg, pieces, precision, record)


DPO_PIECES = DPOPieces()


def train_dpo(sft: GPT, tokenizer: Tokenizer, rows, cfg: DPOConfig, seed: int = 0,
              device=None, settings: RunSettings | None = None,
              pieces: DPOPieces = DPO_PIECES) -> tuple[GPT, dict]:
    """Train a copy of ``sft`` with eq-dpo-loss on comparison ``rows`` (with ``prompt_id``); the
    frozen ``sft`` is the reference.

    The log holds, per step: the loss, the implicit reward margin (chosen minus rejected) and the
    share of pairs whose implicit reward puts the chosen response first. ``settings`` (precision)
    default to the device's own (:func:`rlhf_minimal.device.run_settings`). ``pieces`` (the loss
    and the loop) default to the package's own; lab 11 passes the student's.
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
    rng = random.Random(seed)
    batches = [dpo_batch(batch, device) for _ in range(cfg.epochs)
               for batch in prompt_batches(groups, cfg.prompts_per_batch, rng)]
    log = {"step": [], "loss": [], "margin": [], "accuracy": [], "n_prompts": len(groups), "n_pairs": len(rows)}
    stats = []
    start = time.time()
    bar = progress(total=len(batches), desc="DPO")

    def record(step: int, loss: torch.Tensor, logprobs: torch.Tensor, b: DPOBatch) -> None:
        guard(loss, step)
        r_c = implicit_reward(logprobs[b.chosen].detach(), b.ref_logprobs[b.chosen], cfg.beta)
        r_r = implicit_reward(logprobs[b.rejected].detach(), b.ref_logprobs[b.rejected], cfg.beta)
        stats.append(torch.stack([loss.detach().float(), (r_c - r_r).mean(), win_share(r_c, r_r)]))
        log["step"].append(step)
        bar.update(1)

    pieces.training_loop(policy, optimizer, tokenizer, batches, cfg, pieces, precision, record)
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


def dpo_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
               pieces: DPOPieces = DPO_PIECES, **overrides):
    """The DPO policy for ``scale`` and ``seed`` (cached), trained from the cached SFT model on the
    reward model's training comparisons (the very pairs the reward model learned from).

    Returns ``(world, tokenizer, policy GPT, info)``; ``info`` holds the training log and the
    evaluation on held-out prompts (SFT and DPO, sampled and greedy, as for PPO) plus the implicit
    reward's accuracy on the held-out comparisons. ``pieces`` (:class:`DPOPieces`) train with
    other functions than the package's, lab 11's student's: the run is cached under its own key.
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
    if pieces_key(pieces, DPO_PIECES):
        stage_cfg["pieces"] = pieces_key(pieces, DPO_PIECES)
    settings = run_settings(device)

    def build(folder):
        rows = load_from_disk(rm_info["comparisons"]).to_list()
        held = load_from_disk(rm_info["heldout_comparisons"]).to_list()
        policy, log = train_dpo(sft, tokenizer, rows, cfg, seed, settings=settings, pieces=pieces)
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
