"""Rejection-sampling fine-tuning (chapter 8): best-of-n, distilled back into the policy.

Sample ``n`` responses to each RL prompt from the SFT model, keep the one the reward model scores
highest, and fine-tune the SFT model on those (prompt, best response) pairs with SFT's own
training (:func:`rlhf_minimal.sft.train_sft`, eq-sft-loss). This is one round of what Llama 2
called rejection sampling and others expert iteration: no policy gradient, no KL term; the
policy moves only as far as best-of-n does. The sampling budget is the RL stages' (``steps *
prompts_per_step`` responses of the PPO preset), spent as ``n`` samples on each of
``budget / n`` RL prompts.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import run_settings
from .grpo import GRPOConfig, evaluate_against_sft
from .preference import sample_k
from .scale import current_scale
from .sft import SFTConfig, train_sft


@dataclass(frozen=True)
class RejectionConfig:
    n: int = 4                       # samples per prompt; the reward model keeps the best
    budget: int | None = None        # responses sampled in all (None: the GRPO/PPO preset's
                                     # steps * prompts_per_step, the same rollout budget)
    epochs: int = 2                  # of fine-tuning on the kept responses
    lr: float = 1e-4                 # a tenth of SFT's: the model starts from SFT, not from base
    batch_size: int = 32
    warmup: int = 10
    temperature: float = 1.0         # sampling temperature and response length: the RL stages'
    max_new_tokens: int = 40

    def __post_init__(self):
        if not 2 <= self.n <= 9:
            raise ValueError(f"n must be between 2 and 9 (sample_k's range), got {self.n}")


def best_responses(tasks, samples: list[list[str]], rm) -> tuple[list[dict], list[float]]:
    """Per task, the sample the reward model scores highest, as a demonstration row (prompt,
    completion, family, task JSON: what :func:`rlhf_minimal.sft.train_sft` reads), and its score."""
    prompts = [t.prompt for t, group in zip(tasks, samples) for _ in group]
    scores = rm.score(prompts, [r for group in samples for r in group]).view(len(tasks), -1)
    best = scores.argmax(-1).tolist()
    rows = [{"prompt": t.prompt, "completion": group[b], "family": t.family, "task": t.to_json()}
            for t, group, b in zip(tasks, samples, best)]
    return rows, scores.max(-1).values.tolist()


def rejection_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None, **overrides):
    """The rejection-sampling fine-tuned policy for ``scale`` and ``seed`` (cached), from the cached
    SFT and reward models. ``overrides`` change fields of :class:`RejectionConfig`.

    Returns ``(world, tokenizer, policy GPT, info)``; ``info`` holds the fine-tuning log (with the
    number of prompts and the mean score of the kept responses) and the evaluation on held-out
    prompts (:func:`rlhf_minimal.grpo.evaluate_against_sft`).
    """
    from .reward import reward_model
    from .sft import sft_model

    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    _, _, rm, rm_info = reward_model(scale, seed, device=device)
    cfg = RejectionConfig(**{**asdict(RejectionConfig()), **overrides})
    rl = GRPOConfig.preset(scale)
    budget = cfg.budget or rl.steps * rl.prompts_per_step
    stage_cfg = {"scale": scale, "seed": seed, "world": asdict(world.config), "rejection": asdict(cfg),
                 "budget": budget, "reward": config_json(rm_info["config"])}
    settings = run_settings(device)

    def build(folder):
        tasks = list(world.splits["rl"])
        random.Random(f"rejection-{seed}").shuffle(tasks)
        n_prompts = budget // cfg.n
        tasks = [tasks[i % len(tasks)] for i in range(n_prompts)]  # cycles when the budget is larger
        samples = sample_k(sft, tokenizer, tasks, cfg.n, cfg.temperature, cfg.max_new_tokens, seed + 300)
        rows, kept = best_responses(tasks, samples, rm)
        sft_cfg = SFTConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
                            max_new_tokens=cfg.max_new_tokens)
        policy, log = train_sft(sft, tokenizer, world, rows, sft_cfg, seed, settings=settings)
        log.update(n_prompts=n_prompts, n_samples=n_prompts * cfg.n,
                   kept_score=round(sum(kept) / len(kept), 4))
        evaluation = evaluate_against_sft(policy, sft, tokenizer, world, rl, seed, "rejection")
        save_checkpoint(folder, policy, {"stage": stage_cfg}, log=log, evaluation=evaluation)

    model, folder = cached_model("rejection", stage_cfg, build, settings, fresh)
    info = {"log": read_json(folder, "log"), "evaluation": read_json(folder, "evaluation"), "config": cfg}
    return world, tokenizer, model, info
