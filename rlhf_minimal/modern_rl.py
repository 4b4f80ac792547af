"""From InstructGPT to today, side by side (chapter 8, lab 12): every method trained (or loaded from
the stage cache) from the scale's SFT model and scored like the pipeline's PPO.

:func:`comparison` is the whole experiment; ``benchmarks/modern_rl.py`` runs it from a shell and
lab 12 shows its recorded runs (:mod:`rlhf_minimal.recorded`). The methods:

* ``ppo``: the course's PPO (:func:`rlhf_minimal.ppo.ppo_policy`),
* ``grpo``: GRPO against the reward model, ``grpo_verifier``: GRPO against the verifier (on the
  RL prompts it can check, the others left out and counted), ``rloo``: RLOO against the reward model,
* ``dpo``: DPO on the reward model's comparisons (:func:`rlhf_minimal.dpo.dpo_policy`),
* ``best_of_4`` and ``best_of_16``: the reward model's pick among SFT samples (from the PPO
  stage's evaluation, the same draw the pipeline reports),
* ``rejection``: rejection-sampling fine-tuning (:func:`rlhf_minimal.rejection.rejection_policy`),
* ``rlaif``: a reward model on a constitution's labels, then GRPO (:func:`rlhf_minimal.rlaif.rlaif_policy`).

Each is scored by the gold judge on the held-out evaluation prompts exactly as the pipeline
scores PPO (sampled at the training temperature, and greedy, seed + 100): gold score, the share of
the gap from SFT to the demonstration writers closed, acceptable rate, the untied win rate against
SFT, KL to SFT, per-family change, and the mean gold score on the prompts the verifier can and
cannot check. ``seconds`` is the stage's own training time, from its log.
"""
from __future__ import annotations

import time

from . import cache
from .device import describe_environment, pick_device
from .judge import GoldJudge
from .pipeline import decisive_win_rate, gap_closed, writers_entry
from .verifier import verifiable

METHODS = ("ppo", "grpo", "grpo_verifier", "rloo", "dpo", "best_of_4", "best_of_16", "rejection", "rlaif")


def stages(scale: str, seed: int, device, methods=METHODS, echo=print) -> dict:
    """Each method's (evaluation, name of its entry in the evaluation, training seconds, extra),
    for ``methods`` (PPO always: best-of-n and the SFT row come from its evaluation)."""
    from .dpo import dpo_policy
    from .grpo import grpo_policy, rloo_policy
    from .ppo import ppo_policy
    from .rejection import rejection_policy
    from .rlaif import rlaif_policy

    out = {}
    calls = {"ppo": lambda: ppo_policy(scale, seed, device=device),
             "grpo": lambda: grpo_policy(scale, seed, device=device),
             "grpo_verifier": lambda: grpo_policy(scale, seed, device=device, reward="verifier"),
             "rloo": lambda: rloo_policy(scale, seed, device=device),
             "dpo": lambda: dpo_policy(scale, seed, device=device),
             "rejection": lambda: rejection_policy(scale, seed, device=device),
             "rlaif": lambda: rlaif_policy(scale, seed, device=device)}
    for name, call in calls.items():
        if name != "ppo" and name not in methods:
            continue
        before, start = len(cache.BUILT), time.time()
        *_, info = call()
        built = len(cache.BUILT) > before
        log = info["log"]
        seconds = log.get("seconds")
        extra = {}
        if name == "rlaif":
            seconds = round(log["seconds"] + log["reward_model"]["seconds"], 1)
            extra = {k: log[k] for k in ("labels", "ai_rm_accuracy_on_human_labels", "human_rm_accuracy_on_human_labels")}
        if name == "grpo_verifier":
            extra = {"n_prompts": log["n_prompts"], "left_out": log["left_out"]}
        if name == "rejection":
            extra = {k: log[k] for k in ("n_prompts", "n_samples", "kept_score")}
        if name in ("grpo", "grpo_verifier", "rloo", "rlaif"):
            extra["train_score_first_last"] = [log["score"][0], log["score"][-1]]
            extra["train_kl_last"] = log["kl"][-1]
        entry = {"ppo": "ppo", "grpo_verifier": "grpo"}.get(name, name)
        out[name] = (info["evaluation"], entry, seconds, {**extra, "built_now": built,
                                                           "stage_wall_seconds": round(time.time() - start, 1)})
        echo(f"[{name}] {'trained' if built else 'loaded'} in {time.time() - start:.0f} s")
    ppo_eval = out["ppo"][0]
    for n in (4, 16):
        if f"best_of_{n}" in methods:
            out[f"best_of_{n}"] = (ppo_eval, f"best_of_{n}", 0.0, {})
    return out


def row(entry: dict, sft: dict, writers: dict, tasks, judge: GoldJudge) -> dict:
    """The comparison's columns for one model's evaluation ``entry`` (sampled or greedy)."""
    verdicts = judge.score_many(tasks, entry["responses"])
    sft_table = sft["table"]
    families = {f: {"score": round(entry["table"][f]["score"] - sft_table[f]["score"], 4),
                    "acceptable": round(entry["table"][f]["acceptable"] - sft_table[f]["acceptable"], 4)}
                for f in sft_table if f != "all"}

    def subset(keep):
        picked = [v for t, v in zip(tasks, verdicts) if keep(t)]
        return {"n": len(picked), "gold_score": round(sum(v.score for v in picked) / len(picked), 4),
                "acceptable": round(sum(v.acceptable for v in picked) / len(picked), 4)}

    out = {"gold_score": entry["gold_score"],
           "gap_closed": gap_closed(entry["gold_score"], sft["gold_score"], writers["gold_score"]),
           "acceptable": entry["table"]["all"]["acceptable"],
           **decisive_win_rate(entry["scores"], sft["scores"]),
           "hallucination": entry["hallucination"],
           "verifiable": subset(verifiable), "unverifiable": subset(lambda t: not verifiable(t)),
           "family_change": families}
    if "kl" in entry:
        out["kl_to_sft"] = entry["kl"]
    return out


def comparison(scale: str, seed: int = 0, methods=METHODS, device=None, echo=print) -> dict:
    """Every method in ``methods`` at ``scale`` and ``seed``, as one report: for each decoding
    (``"sampled"``, ``"greedy"``) a row per method (:func:`row`, with its training ``seconds`` and,
    sampled, its ``details``), SFT and the demonstration writers included."""
    from .sft import sft_model

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose among {', '.join(METHODS)}")
    device = pick_device(device)
    world, *_ = sft_model(scale, seed, device=device)
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    judge, writers = GoldJudge(world), writers_entry(world, tasks)
    runs = stages(scale, seed, device, methods, echo)
    env = describe_environment()
    report = {"scale": scale, "seed": seed, "device": str(device), "gpu": env["gpu"],
              "cpu_threads": env["cpu_threads"], "torch": env["torch"], "n_eval_prompts": len(tasks),
              "left_out": [m for m in METHODS if m not in runs], "methods": {}}
    for decoding in ("sampled", "greedy"):
        sft = runs["ppo"][0][decoding]["sft"]
        table = {"sft": row(sft, sft, writers, tasks, judge), "writers": row(writers, sft, writers, tasks, judge)}
        for name in (m for m in METHODS if m in runs):
            evaluation, entry, seconds, extra = runs[name]
            if entry not in evaluation[decoding]:
                continue  # best-of-n has no greedy decoding
            if evaluation[decoding]["sft"]["scores"] != sft["scores"]:
                raise RuntimeError(f"{name}'s evaluation decoded SFT differently from PPO's: the "
                                   "comparison needs one SFT sample per prompt for every method")
            table[name] = {**row(evaluation[decoding][entry], sft, writers, tasks, judge), "seconds": seconds,
                           **({"details": extra} if decoding == "sampled" else {})}
        report["methods"][decoding] = table
    return report
