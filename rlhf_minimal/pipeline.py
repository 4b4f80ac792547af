"""The whole pipeline: stages 0-3 with the stage cache, one evaluation, one report (chapter 6).

``run_pipeline`` trains (or loads) the base model, the SFT model, the reward model and the PPO
policy, then scores base, SFT, best-of-n and PPO the same way on the held-out evaluation prompts:
sampled at the training temperature and greedy. It returns a JSON-ready report; ``summary_text``
turns it into the table the command line prints (``python -m rlhf_minimal run``).

``size_sweep`` is InstructGPT's headline in miniature: three network sizes, each as base, SFT and
PPO (all against the one medium reward model), scored by win rate against the medium SFT model.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import cache
from .cache import config_json
from .device import describe_environment, pick_device, run_settings
from .evaluate import compare_policies, gold_entry, scores_only, win_rate
from .judge import GoldJudge
from .scale import current_scale

LABELS = {"base": "base", "sft": "SFT", "ppo": "PPO", "writers": "writers",
          "ppo_likelihood": "PPO-on-SFT-lik"}


def model_label(name: str) -> str:
    """The table's name for a report row: ``best_of_4`` -> ``best-of-4``, ``sft`` -> ``SFT``."""
    return name.replace("_", "-") if name.startswith("best_of_") else LABELS[name]


def decisive_win_rate(scores_a: list[float], scores_b: list[float]) -> dict:
    """Win rate of A over B among the prompts where their gold scores differ, and the share of
    prompts where they tie. Half of SFT's sampled answers score exactly 1.0, so most prompts tie
    and :func:`win_rate` (ties count half) cannot move far from 0.5; this one can."""
    if len(scores_a) != len(scores_b) or not scores_a:
        raise ValueError("decisive_win_rate needs two equally long, non-empty lists of scores")
    wins = sum(a > b for a, b in zip(scores_a, scores_b))
    decided = sum(a != b for a, b in zip(scores_a, scores_b))
    return {"win_rate_untied": round(wins / decided, 4) if decided else 0.5,
            "tie_share": round(1 - decided / len(scores_a), 4)}


def gap_closed(gold: float, sft_gold: float, writers_gold: float) -> float:
    """The share of the way from SFT's mean gold score to the demonstration writers' that a model
    has gone: 0 is SFT, 1 is the writers, negative is worse than SFT."""
    if writers_gold == sft_gold:
        return 0.0
    return round((gold - sft_gold) / (writers_gold - sft_gold), 4)


def standard_error(a: list[float], b: list[float] | None = None) -> float:
    """Standard error of the mean of ``a`` over prompts, or of the paired difference ``a - b``
    (the same prompts, so what they share cancels)."""
    x = a if b is None else [u - v for u, v in zip(a, b, strict=True)]
    if len(x) < 2:
        raise ValueError("a standard error needs at least two prompts")
    mean = sum(x) / len(x)
    return (sum((u - mean) ** 2 for u in x) / (len(x) - 1) / len(x)) ** 0.5


def gap_closed_se(scores: list[float], sft_scores: list[float], sft_gold: float, writers_gold: float) -> float:
    """The standard error of :func:`gap_closed` from the prompt-to-prompt spread of a model's gold
    scores minus SFT's, paired by prompt. With one sampled response per prompt and about 460
    prompts it is near 0.08: gaps closer than about twice that are not told apart."""
    if writers_gold == sft_gold:
        return 0.0
    return round(standard_error(scores, sft_scores) / abs(writers_gold - sft_gold), 4)


def _timed(name: str, fn, stages: dict, echo):
    echo(f"[{name}] ...")
    before, start = len(cache.BUILT), time.time()
    result = fn()
    seconds = round(time.time() - start, 1)
    built = len(cache.BUILT) > before
    stages[name] = {"seconds": seconds, "built": built}
    echo(f"[{name}] {'trained' if built else 'loaded from the cache'} in {seconds:.1f} s")
    return result


def _model_row(entry: dict, sft: dict, writers: dict) -> dict:
    row = {"gold_score": entry["gold_score"], "acceptable": entry["table"]["all"]["acceptable"],
           "hallucination": entry["hallucination"], "win_rate_vs_sft": win_rate(entry["scores"], sft["scores"]),
           **decisive_win_rate(entry["scores"], sft["scores"]),
           "gap_closed": gap_closed(entry["gold_score"], sft["gold_score"], writers["gold_score"]),
           "gap_closed_se": gap_closed_se(entry["scores"], sft["scores"], sft["gold_score"], writers["gold_score"])}
    if "kl" in entry:
        row["kl_to_sft"] = entry["kl"]
    return row


def writers_entry(world, tasks) -> dict:
    """The demonstration writers' own answer to each prompt (:func:`rlhf_minimal.world.ideal_response`),
    scored like a model. It is the ceiling of the table: a policy that always answered like the
    careful writer would reach this win rate against SFT and no more, since ties count half."""
    from .world import ideal_response

    return scores_only(gold_entry(tasks, [ideal_response(world, t) for t in tasks], GoldJudge(world)))


def evaluate_base(base, sft, tokenizer, world, ppo_cfg, seed: int) -> dict:
    """The base model decoded exactly as :func:`rlhf_minimal.evaluate.evaluate_ppo` decodes the others."""
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    result = compare_policies({"base": base}, GoldJudge(world), tokenizer, tasks, sft,
                              ppo_cfg.temperature, ppo_cfg.max_new_tokens, seed + 100)
    for entry in (result["sampled"]["base"], result["greedy"]["base"]):
        scores_only(entry)
    return result


def run_pipeline(scale: str | None = None, seed: int = 0, fresh: bool = False, device=None,
                 out: str | Path | None = None, echo=print) -> dict:
    """Stages 0-3 for ``scale`` and ``seed`` (``fresh``: rebuild every stage, ignoring the cache),
    then the evaluation. Returns the report; writes it as JSON to ``out`` when given."""
    from .ppo import ppo_policy
    from .pretrain import base_model
    from .reward import reward_model
    from .sft import sft_model

    scale = current_scale(scale)
    device = pick_device(device)
    stages: dict = {}
    start = time.time()
    echo(f"rlhf_minimal pipeline: scale {scale}, seed {seed}, device {device}"
         + (", ignoring the cache" if fresh else f", cache {cache.cache_root()}"))
    world, tokenizer, base, base_log = _timed(
        "pretrain", lambda: base_model(scale, seed, fresh, device), stages, echo)
    _, _, sft, sft_log = _timed("sft", lambda: sft_model(scale, seed, fresh, device), stages, echo)
    _, _, rm, rm_info = _timed("reward", lambda: reward_model(scale, seed, fresh, device), stages, echo)
    _, _, policy, ppo_info = _timed("ppo", lambda: ppo_policy(scale, seed, fresh, device), stages, echo)
    # the sharpening control: the same PPO against the SFT model's own likelihood, no preferences
    _, _, _, control_info = _timed("ppo_likelihood", lambda: ppo_policy(
        scale, seed, fresh, device, reward_source="likelihood"), stages, echo)
    for name, log in (("pretrain", base_log), ("sft", sft_log), ("reward", rm_info["log"]),
                      ("ppo", ppo_info["log"]), ("ppo_likelihood", control_info["log"])):
        stages[name]["train_seconds"] = log.get("seconds")
    echo("[evaluate] base model ...")
    eval_start = time.time()
    base_eval = evaluate_base(base, sft, tokenizer, world, ppo_info["config"], seed)
    stages["evaluate_base"] = {"seconds": round(time.time() - eval_start, 1), "built": None}

    evaluation = ppo_info["evaluation"]
    by_prompt = {t.prompt: t for t in world.splits["eval"]}
    writers = writers_entry(world, [by_prompt[p] for p in evaluation["prompts"]])
    best_of = sorted(int(k.split("_")[-1]) for k in evaluation["sampled"] if k.startswith("best_of_"))
    order = ("base", "sft", *(f"best_of_{n}" for n in best_of), "ppo_likelihood", "ppo", "writers")
    results = {}
    for decoding in ("sampled", "greedy"):
        entries = {"base": base_eval[decoding]["base"], **evaluation[decoding], "writers": writers,
                   "ppo_likelihood": control_info["evaluation"][decoding]["ppo"]}
        results[decoding] = {name: _model_row(entries[name], entries["sft"], writers)
                             for name in order if name in entries}
    families = {decoding: {name: {f: row["score"] for f, row in evaluation[decoding][name]["table"].items()}
                           for name in ("sft", "ppo")} for decoding in ("sampled", "greedy")}
    rm_eval = rm_info["evaluation"]
    env = describe_environment()
    report = {
        "scale": scale, "seed": seed, "device": str(device), "gpu": env["gpu"],
        "precision": ppo_info["log"].get("precision"),
        "cuda_graphs": run_settings(device).cuda_graphs,
        "versions": {k: env[k] for k in ("python", "torch", "rlhf_minimal", "transformers", "datasets")},
        "platform": env["platform"], "cpu_threads": env["cpu_threads"],
        "peak_gpu_memory_gb": (round(torch.cuda.max_memory_allocated() / 2**30, 3)
                               if device.type == "cuda" else None),
        "stages": stages,
        "total_seconds": round(time.time() - start, 1),
        "best_of_n": best_of,
        "n_eval_prompts": evaluation["n_prompts"],
        "results": results,
        "families": families,
        "reward_model": {"accuracy": rm_eval["accuracy"], "ceiling": rm_eval["ceiling"],
                         "accuracy_vs_gold": rm_eval["accuracy_vs_gold"],
                         "gold_order": rm_eval.get("gold_order"),
                         "gold_order_head": (rm_eval.get("gold_order_head") or {}).get("all"),
                         "gold_order_likelihood": (rm_eval.get("gold_order_likelihood") or {}).get("all"),
                         "prior_weight": (rm_eval.get("prior_fit") or {}).get("alpha"),
                         "labeler_labeler": rm_eval["agreement"]["labeler_labeler"],
                         "n_train_pairs": rm_eval["n_train_pairs"], "n_heldout_pairs": rm_eval["n_heldout_pairs"]},
        "ppo_training": {"gold_score_first": ppo_info["log"]["gold_score"][0],
                         "gold_score_last": ppo_info["log"]["gold_score"][-1],
                         "kl_last": ppo_info["log"]["kl"][-1]},
        "config": {"world": asdict(world.config), "pretrain_parameters": base_log.get("parameters"),
                   "reward": config_json(rm_info["config"]),
                   "ppo": asdict(ppo_info["config"])},
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    return report


def summary_text(report: dict) -> str:
    """The report as the plain-text tables the command line prints."""
    lines = [f"scale {report['scale']}, seed {report['seed']}, device {report['device']}"
             + (f" ({report['gpu']})" if report.get("gpu") else "")
             + f", precision {report['precision']}", "",
             f"{'stage':<14}{'seconds':>9}  from",]
    for name, row in report["stages"].items():
        source = {True: "trained now", False: "cache", None: ""}[row["built"]]
        lines.append(f"{name:<14}{row['seconds']:>9.1f}  {source}")
    lines.append(f"{'total':<14}{report['total_seconds']:>9.1f}")
    if report.get("peak_gpu_memory_gb") is not None:
        lines.append(f"peak GPU memory {report['peak_gpu_memory_gb']:.2f} GB")
    lines += ["", f"gold judge on {report['n_eval_prompts']} held-out prompts (gap: share of the way from "
              "SFT to the writers, ± its standard error over prompts; win: among prompts where the two differ, beside the share of ties; "
              "win 1/2: ties count half; KL in nats per response)"]
    header = (f"{'model':<15}{'decoding':<9}{'gold':>7}{'gap':>7}{'±':>5}{'accept':>8}{'win':>7}{'ties':>6}"
              f"{'win 1/2':>8}{'made up':>8}{'KL':>7}")
    lines.append(header)
    for decoding in ("sampled", "greedy"):
        for name, row in report["results"][decoding].items():
            label = "writers*" if name == "writers" else model_label(name)
            kl = f"{row['kl_to_sft']:>7.2f}" if "kl_to_sft" in row else f"{'':>7}"
            se = f"{row['gap_closed_se']:>5.2f}" if "gap_closed_se" in row else f"{'':>5}"
            lines.append(f"{label:<15}{decoding:<9}{row['gold_score']:>7.3f}{row['gap_closed']:>7.2f}{se}"
                         f"{row['acceptable']:>8.3f}{row['win_rate_untied']:>7.3f}{row['tie_share']:>6.2f}"
                         f"{row['win_rate_vs_sft']:>8.3f}{row['hallucination']:>8.2f}{kl}")
    if any("writers" in rows for rows in report["results"].values()):
        lines.append("* the demonstration writers' own answers: the best a policy can do on this table")
    rm = report["reward_model"]
    lines += ["", f"reward model: held-out accuracy {rm['accuracy']:.3f} (ceiling {rm['ceiling']:.3f}), "
              f"agrees with the gold order on {rm['accuracy_vs_gold']:.3f} of {rm['n_heldout_pairs']} pairs"]
    if rm.get("gold_order"):
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in rm["gold_order"].items()
                          if not k.startswith("n_") and k != "all")
        lines.append(f"  gold order by kind of difference: {kinds}")
    if rm.get("prior_weight") is not None:
        lines.append(f"  the head alone {rm['gold_order_head']:.3f}, SFT's likelihood alone "
                     f"{rm['gold_order_likelihood']:.3f}; prior weight alpha {rm['prior_weight']:.3f} (eq-reward-prior)")
    return "\n".join(lines)


# InstructGPT's data (Ouyang et al. 2022, section 3 and appendix A): prompts per stage, and the
# tokens GPT-3 was pretrained on (Brown et al. 2020).
INSTRUCTGPT_DATA = {"pretraining tokens": 300e9, "SFT prompts": 13e3, "reward-model prompts": 33e3,
                    "PPO prompts": 31e3}


def data_scale(scale: str | None = None, seed: int = 0) -> list[dict]:
    """How much data each stage uses at ``scale``, beside InstructGPT's (chapter 6's table).

    Pretraining counts the tokens the base model is trained on; the other stages count prompts
    (the reward model's include its held-out share).
    """
    from .pretrain import PretrainConfig
    from .world import WorldConfig, make_world

    scale = current_scale(scale)
    world = make_world(config=WorldConfig.preset(scale, seed))
    pre = PretrainConfig.preset(scale)
    ours = {"pretraining tokens": pre.steps * pre.batch_size * pre.window,
            "SFT prompts": len(world.splits["sft"]), "reward-model prompts": len(world.splits["rm"]),
            "PPO prompts": len(world.splits["rl"])}
    return [{"what": k, "ours": ours[k], "instructgpt": INSTRUCTGPT_DATA[k]} for k in ours]


def size_sweep(scale: str | None = None, seed: int = 0, sizes=("small", "medium", "large"),
               device=None, echo=print) -> dict:
    """Base, SFT and PPO at each network size, every PPO run against the medium reward model;
    each decoded like :func:`run_pipeline` and scored by win rate against the medium SFT model.

    Returns ``{"sizes": [...], "parameters": {size: n}, "sampled"|"greedy": {size: {model: win}},
    "gold": {decoding: {size: {model: mean gold score}}}}``.
    """
    from .ppo import ppo_policy
    from .pretrain import base_model
    from .sft import sft_model

    scale = current_scale(scale)
    device = pick_device(device)
    out = {"sizes": list(sizes), "parameters": {}, "sampled": {}, "greedy": {},
           "gold": {"sampled": {}, "greedy": {}}, "seconds": {}}
    _, _, reference, _ = sft_model(scale, seed, device=device)
    entries = {}
    for size in sizes:
        echo(f"[size {size}] base, SFT and PPO ...")
        start = time.time()
        world, tokenizer, base, _ = base_model(scale, seed, device=device, size=size)
        _, _, sft, _ = sft_model(scale, seed, device=device, size=size)
        _, _, policy, info = ppo_policy(scale, seed, device=device, size=size)
        tasks = [t for t in world.splits["eval"] if t.lang == "a"]
        cfg = info["config"]
        entries[size] = compare_policies({"base": base, "sft": sft, "ppo": policy}, GoldJudge(world),
                                         tokenizer, tasks, reference, cfg.temperature,
                                         cfg.max_new_tokens, seed + 100)
        out["parameters"][size] = base.num_parameters()
        out["seconds"][size] = round(time.time() - start, 1)
    for decoding in ("sampled", "greedy"):
        ref_scores = [v.score for v in entries["medium" if "medium" in entries else sizes[0]][decoding]["sft"]["verdicts"]]
        for size in sizes:
            out[decoding][size], out["gold"][decoding][size] = {}, {}
            for name, entry in entries[size][decoding].items():
                scores = [v.score for v in entry["verdicts"]]
                out[decoding][size][name] = win_rate(scores, ref_scores)
                out["gold"][decoding][size][name] = entry["gold_score"]
    return out
