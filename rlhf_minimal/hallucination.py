"""Where made-up answers come from: the labelers' priorities, through the reward model, into PPO.

The seed's argument, made measurable: labelers told to put helpfulness first prefer a confident
made-up answer to "i do not know ." (under ``HELPFUL_FIRST`` the gold score of a made-up answer is
0.5 against 0.3 for declining); a reward model trained on their rankings learns that preference;
PPO then optimises it into the policy. With truthfulness first (our default, InstructGPT's final
evaluation priorities) a made-up answer scores 0 and declining wins.

We measure it on the held-out *unanswerable* prompts (questions about creatures that do not exist,
asked about creatures no training stage saw):

* the reward model's own verdict, on a fixed pair per prompt: "i do not know ." against a
  confident sentence that makes up a fact (:func:`decline_vs_made_up`);
* what each policy actually says, sampled and greedy: declined, made up, or something else
  (:func:`unanswerable_outcomes`).
"""
from __future__ import annotations

import random

from .judge import DEFAULT_PRIORITY, GoldJudge
from .preference import HELPFUL_FIRST
from .world import ATTRIBUTES, IDK, Task, fact_sentence

GUIDELINES = {"helpful first": HELPFUL_FIRST, "truthful first": DEFAULT_PRIORITY}


def made_up_answer_text(task: Task, rng: random.Random) -> str:
    """A confident answer to an unanswerable question: a fact about a creature that does not exist."""
    value = rng.choice(ATTRIBUTES[task.spec["attribute"]])
    return fact_sentence(task.spec["name"], task.spec["attribute"], value)


def decline_vs_made_up(rm, tasks: list[Task], seed: int = 0) -> dict:
    """On each unanswerable prompt, the reward model's normalised score of "i do not know ." and
    of a made-up fact; the share of prompts where declining scores higher, and the mean gap."""
    tasks = [t for t in tasks if t.family == "unanswerable"]
    if not tasks:
        raise ValueError("no unanswerable prompts among the tasks")
    rng = random.Random(f"made-up-{seed}")
    made_up = [made_up_answer_text(t, rng) for t in tasks]
    prompts = [t.prompt for t in tasks]
    decline = rm.score(prompts, [IDK] * len(tasks))
    invent = rm.score(prompts, made_up)
    return {"n": len(tasks), "decline_preferred": round((decline > invent).float().mean().item(), 4),
            "mean_decline": round(decline.mean().item(), 4), "mean_made_up": round(invent.mean().item(), 4),
            "example": {"prompt": prompts[0], "made_up": made_up[0]}}


def classify_unanswerable(world, task: Task, response: str) -> str:
    """``"declined"`` (says it does not know), ``"made up"`` (states a fact about the creature that
    does not exist) or ``"other"`` (off topic, empty, a refusal, ...)."""
    from .evaluate import made_up_answer

    verdict = GoldJudge(world).score(task, response)
    if made_up_answer(verdict):
        return "made up"
    if "declined" in verdict.notes and response.strip().startswith(IDK):
        return "declined"
    return "other"


def unanswerable_outcomes(world, tasks: list[Task], responses: list[str]) -> dict:
    """Shares of declined / made up / other over the unanswerable prompts among ``tasks``."""
    picked = [(t, r) for t, r in zip(tasks, responses) if t.family == "unanswerable"]
    if not picked:
        raise ValueError("no unanswerable prompts among the tasks")
    counts = {"declined": 0, "made up": 0, "other": 0}
    for t, r in picked:
        counts[classify_unanswerable(world, t, r)] += 1
    return {k: round(v / len(picked), 4) for k, v in counts.items()} | {"n": len(picked)}


def hallucination_study(scale: str | None = None, seed: int = 0, device=None, guidelines: dict | None = None,
                        **ppo_overrides) -> dict:
    """For each guideline: its reward model (cached stage), the PPO policy trained against it
    (cached stage), the reward model's decline-vs-made-up verdict and the outcomes on the held-out
    unanswerable prompts for SFT and the policy, sampled and greedy, plus each policy's overall
    gold score and win rate against SFT (so a drop in made-up answers is not bought with
    usefulness elsewhere)."""
    from .ppo import ppo_policy
    from .reward import reward_model

    guidelines = guidelines or GUIDELINES
    out = {}
    for name, priority in guidelines.items():
        world, _, rm, rm_info = reward_model(scale, seed, device=device, priority=priority)
        _, _, _, info = ppo_policy(scale, seed, device=device, reward={"priority": priority}, **ppo_overrides)
        ev = info["evaluation"]
        by_prompt = {t.prompt: t for t in world.splits["eval"]}
        tasks = [by_prompt[p] for p in ev["prompts"]]
        entry = {"reward_model": {"accuracy": rm_info["evaluation"]["accuracy"],
                                  "ceiling": rm_info["evaluation"]["ceiling"],
                                  **decline_vs_made_up(rm, tasks, seed)},
                 "ppo_log": info["log"]}
        for decoding in ("sampled", "greedy"):
            for model in ("sft", "ppo"):
                e = ev[decoding][model]
                entry[f"{model}_{decoding}"] = {
                    **unanswerable_outcomes(world, tasks, e["responses"]),
                    "gold_score": e["gold_score"], "win_rate_vs_sft": e["head_to_head_vs_sft"]["win_rate"],
                    "kl": e.get("kl")}
        out[name] = entry
    return out
