"""RLAIF in miniature (chapter 8): the comparisons labelled by a written constitution and a model,
not by the simulated human labelers.

Constitutional AI (Bai et al., 2022) and RLAIF (Lee et al., 2023) replace the human labelers of
the preference stage with a model that reads a short list of principles. Ours is
:class:`AILabeler`: it prefers the response that breaks fewer principles of :data:`CONSTITUTION`
(each a rule on the text of the prompt and response, with no access to the world's facts), and
between two responses that break the same number it prefers the one the SFT model itself finds
more likely (mean log-probability per token, :class:`rlhf_minimal.reward.LikelihoodReward`):
the labelling model's own taste. Like a real AI labeler it can read form and harm, but it cannot
know whether a creature is blue.

The pipeline: relabel the very responses the human-labelled reward model learned from (the
reward stage's comparisons, SFT samples), train a reward model on the new labels with the
reward stage's training (:func:`rlhf_minimal.reward.train_reward_model`), then GRPO against it
(:func:`rlhf_minimal.grpo.train_grpo`, the GRPO preset) and the usual evaluation by the gold judge.
"""
from __future__ import annotations

import random
from dataclasses import asdict

from .cache import cached_model, config_json, read_json, save_checkpoint
from .device import run_settings
from .grpo import GRPOConfig, evaluate_against_sft, train_grpo
from .judge import GoldJudge, split_sentences
from .reward import LikelihoodReward, RewardModel, train_reward_model
from .scale import current_scale
from .world import FILLERS, HARM_VERBS, REFUSAL


def _harmful_request(prompt: str) -> bool:
    return any(verb in prompt.split() for verb in HARM_VERBS)


def _helps_with_harm(prompt: str, response: str) -> bool:
    sentences = split_sentences(response)
    return _harmful_request(prompt) and (not sentences or " ".join(sentences[0]) != REFUSAL)


def _refuses_harmless(prompt: str, response: str) -> bool:
    return not _harmful_request(prompt) and response.strip().startswith(REFUSAL)


def _filler(prompt: str, response: str) -> bool:
    return any(" ".join(s) in FILLERS or s[-1] == "?" for s in split_sentences(response))


def _repeats(prompt: str, response: str) -> bool:
    sentences = [" ".join(s) for s in split_sentences(response)]
    return len(set(sentences)) < len(sentences)


def _empty(prompt: str, response: str) -> bool:
    return not response.split()


# The constitution: (principle, rule that says whether a response breaks it). It says nothing
# about "i do not know .": the labeler cannot tell a question it should decline from one it
# should answer. The rules read language A only.
CONSTITUTION = (
    ("Do not help anyone hurt, trap or rob a creature; decline with the refusal.", _helps_with_harm),
    ("Do not refuse a harmless request.", _refuses_harmless),
    ("Answer without filler and without asking questions back.", _filler),
    ("Do not say the same sentence twice.", _repeats),
    ("Say something.", _empty),
)


def violations(prompt: str, response: str) -> list[str]:
    """The principles of :data:`CONSTITUTION` that ``response`` breaks."""
    return [principle for principle, breaks in CONSTITUTION if breaks(prompt, response)]


class AILabeler:
    """Orders a prompt's responses by (fewer violated principles, higher likelihood under ``model``,
    the SFT model); ``likelihood`` is a :class:`~rlhf_minimal.reward.LikelihoodReward`."""

    def __init__(self, likelihood: LikelihoodReward):
        self.likelihood = likelihood

    def relabel(self, rows) -> tuple[list[dict], dict]:
        """New comparison rows for the responses of ``rows`` (comparison rows with ``prompt_id``):
        every pair of distinct responses to a prompt, the preferred one as ``chosen``. Returns the
        rows and counts: pairs decided by the principles, by the likelihood, and kept as the
        human majority had them."""
        from .preference import group_by_prompt

        groups = group_by_prompt(rows)
        ids = list(dict.fromkeys(r["prompt_id"] for r in rows))
        task_of = {r["prompt_id"]: r.get("task") for r in rows}
        flat_prompts = [g["prompt"] for g in groups for _ in g["responses"]]
        flat_responses = [r for g in groups for r in g["responses"]]
        likelihood = self.likelihood.score(flat_prompts, flat_responses).tolist()
        out, counts, offset = [], {"by_principles": 0, "by_likelihood": 0, "same_as_humans": 0}, 0
        for pid, g in zip(ids, groups):
            keys = [(-len(violations(g["prompt"], r)), likelihood[offset + j]) for j, r in enumerate(g["responses"])]
            human = set(g["pairs"])
            for a in range(len(keys)):
                for b in range(a + 1, len(keys)):
                    if keys[a] == keys[b]:
                        continue
                    better, worse = (a, b) if keys[a] > keys[b] else (b, a)
                    counts["by_principles" if keys[a][0] != keys[b][0] else "by_likelihood"] += 1
                    counts["same_as_humans"] += (better, worse) in human
                    out.append({"prompt": g["prompt"], "chosen": g["responses"][better],
                                "rejected": g["responses"][worse], "prompt_id": pid, "task": task_of[pid]})
            offset += len(g["responses"])
        counts["n_pairs"], counts["n_human_pairs"] = len(out), len(rows)
        return out, counts


def rlaif_policy(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None, **overrides):
    """The RLAIF policy for ``scale`` and ``seed`` (cached): a reward model trained on the
    :class:`AILabeler`'s labels of the reward stage's responses, then GRPO against it (``overrides``
    change fields of :class:`~rlhf_minimal.grpo.GRPOConfig`).

    Returns ``(world, tokenizer, policy GPT, info)``; ``info`` holds the labelling counts, the
    AI reward model's accuracy on the *human* held-out comparisons, the GRPO log and the evaluation.
    """
    from datasets import load_from_disk

    from .reward import pairwise_accuracy, reward_model
    from .sft import sft_model

    scale = current_scale(scale)
    world, tokenizer, sft, _ = sft_model(scale, seed, device=device)
    _, _, human_rm, rm_info = reward_model(scale, seed, device=device)
    rm_cfg = rm_info["config"]
    cfg = GRPOConfig(**{**asdict(GRPOConfig.preset(scale)), **overrides})
    stage_cfg = {"scale": scale, "seed": seed, "world": asdict(world.config), "grpo": asdict(cfg),
                 "reward": config_json(rm_cfg), "constitution": [p for p, _ in CONSTITUTION]}
    settings = run_settings(device)

    def build(folder):
        rows = load_from_disk(rm_info["comparisons"]).to_list()
        held = load_from_disk(rm_info["heldout_comparisons"]).to_list()
        responses = list(dict.fromkeys((r["prompt"], x) for r in rows for x in (r["chosen"], r["rejected"])))
        fit = random.Random(f"rlaif-{seed}").sample(responses, min(4000, len(responses)))
        likelihood = LikelihoodReward(sft, tokenizer).fit_normalisation([p for p, _ in fit], [r for _, r in fit])
        ai_rows, counts = AILabeler(likelihood).relabel(rows)
        ids = sorted({r["prompt_id"] for r in ai_rows})
        random.Random(f"rlaif-val-{seed}").shuffle(ids)
        val_ids = set(ids[:max(2, int(len(ids) * rm_cfg.val_share))])
        model, rm_log = train_reward_model(sft, tokenizer, [r for r in ai_rows if r["prompt_id"] not in val_ids],
                                           rm_cfg, seed, val_rows=[r for r in ai_rows if r["prompt_id"] in val_ids],
                                           settings=settings)
        ai_rm = RewardModel(model, tokenizer).fit_normalisation([p for p, _ in fit], [r for _, r in fit])
        policy, log = train_grpo(sft, ai_rm, tokenizer, list(world.splits["rl"]), cfg, seed,
                                 judge=GoldJudge(world), settings=settings)
        log.update(labels=counts, reward_model=rm_log,
                   ai_rm_accuracy_on_human_labels=pairwise_accuracy(ai_rm, held),
                   human_rm_accuracy_on_human_labels=pairwise_accuracy(human_rm, held))
        evaluation = evaluate_against_sft(policy, sft, tokenizer, world, cfg, seed, "rlaif")
        save_checkpoint(folder, policy, {"stage": stage_cfg}, log=log, evaluation=evaluation)

    model, folder = cached_model("rlaif", stage_cfg, build, settings, fresh)
    info = {"log": read_json(folder, "log"), "evaluation": read_json(folder, "evaluation"), "config": cfg}
    return world, tokenizer, model, info
