"""PPO's gold gain against its rollout budget and its KL to SFT, beside best-of-n (chapter 6).

    python benchmarks/ppo_curve.py --scale cpu --seed 0 --steps 480 --out ppo_curve_cpu_seed0.json

One PPO run of ``--steps`` rollout batches with the scale's preset (``--settings`` changes fields of
:class:`~rlhf_minimal.ppo.PPOConfig`), trained from the cached SFT and reward models, is evaluated
part-way at each of ``--at`` batches on the held-out prompts by the gold judge, greedy and sampled.
The preset has no learning-rate schedule, so the policy after ``k`` batches of a long run is the
policy a run of ``k`` batches would give. Beside it, best-of-n for n = 1, 2, 4, 8, 16 from one draw
of 16 SFT samples per prompt (the best of each of the 16 / n disjoint groups of n), whose KL to SFT
is the analytic ``log n - (n - 1) / n``. Gap closed against KL to SFT puts both on the same axes,
which is how one compares an RL method with best-of-n fairly (Gao et al., "Scaling laws for reward model overoptimization").

The pipeline scores one sample per prompt; with about 460 prompts that leaves a standard error of
about 0.08 on a sampled gap closed, as large as the differences in question. Here each policy is
sampled ``--samples`` times per prompt (default 4) and best-of-4 is picked 4 times per prompt, and
every gap comes with its standard error over prompts (``se_gap``; for PPO minus best-of-4, paired
by prompt). ``--samples 1`` reproduces the pipeline's sampled numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not installed

from rlhf_minimal.evaluate import best_of_n, generate_responses, gold_entry, scores_only, sequence_kl  # noqa: E402
from rlhf_minimal.judge import GoldJudge  # noqa: E402
from rlhf_minimal.pipeline import decisive_win_rate, gap_closed, standard_error, writers_entry  # noqa: E402
from rlhf_minimal.ppo import PPOConfig, train_ppo  # noqa: E402
from rlhf_minimal.reward import reward_model  # noqa: E402
from rlhf_minimal.scale import SCALES  # noqa: E402
from rlhf_minimal.sft import sft_model  # noqa: E402


def per_prompt(scores: list[float], m: int) -> list[float]:
    """Mean gold score per prompt from ``m`` consecutive samples per prompt."""
    return [sum(scores[i:i + m]) / m for i in range(0, len(scores), m)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=480, help="rollout batches in the run")
    parser.add_argument("--at", default="60,120,180,240,360,480", help="batches at which to evaluate")
    parser.add_argument("--samples", type=int, default=4,
                        help="sampled responses per evaluation prompt (best-of-n: 16 // n picks per prompt)")
    parser.add_argument("--settings", default=None, help="PPOConfig overrides as JSON, e.g. '{\"kl_coef\": 0.05}'")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    at = sorted({int(a) for a in args.at.split(",") if int(a) <= args.steps})
    settings = json.loads(args.settings) if args.settings else {}
    m = args.samples

    world, tokenizer, sft, _ = sft_model(args.scale, args.seed)
    _, _, rm, _ = reward_model(args.scale, args.seed)
    cfg = PPOConfig(**{**asdict(PPOConfig.preset(args.scale)), **settings, "steps": args.steps})
    judge = GoldJudge(world)
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    repeated = [t for t in tasks for _ in range(m)]
    writers = writers_entry(world, tasks)["gold_score"]
    seed = args.seed + 100  # the evaluation's seed in evaluate_ppo

    def evaluate_policy(model) -> dict:
        """Sampled (``m`` per prompt) and greedy gold entries of ``model``, with per-prompt scores."""
        out = {}
        for decoding, group, temperature in (("sampled", repeated, cfg.temperature), ("greedy", tasks, 0.0)):
            responses = generate_responses(model, tokenizer, [t.prompt for t in group], cfg.max_new_tokens,
                                           temperature=temperature, seed=seed)
            entry = scores_only(gold_entry(group, responses, judge))
            entry["per_prompt"] = per_prompt(entry["scores"], m if decoding == "sampled" else 1)
            if decoding == "sampled":
                kls = sequence_kl(model, sft, tokenizer, group, responses, cfg.temperature)
                entry["kl"] = round(sum(kls) / len(kls), 4)
            out[decoding] = entry
        return out

    base = evaluate_policy(sft)
    bon = best_of_n(sft, rm, tokenizer, tasks, 16, cfg.temperature, cfg.max_new_tokens, args.seed + 200)
    curve = {"n": [], "kl": [], "gold_score": [], "gap": [], "se_gap": [], "per_prompt": {}}
    span = writers - base["sampled"]["gold_score"]
    for n in (1, 2, 4, 8, 16):
        picks_t, picks_r = [], []
        for task, responses, scores in zip(tasks, bon["all_responses"], bon["all_rm_scores"]):
            for g in range(0, 16, n):  # 16 // n disjoint groups of n samples, the best of each
                j = max(range(g, g + n), key=lambda i: scores[i])
                picks_t.append(task)
                picks_r.append(responses[j])
        scores = [v.score for v in judge.score_many(picks_t, picks_r)]
        prompts = per_prompt(scores, 16 // n)
        curve["n"].append(n)
        curve["kl"].append(round(math.log(n) - (n - 1) / n, 4))
        curve["gold_score"].append(round(sum(scores) / len(scores), 4))
        curve["gap"].append(gap_closed(curve["gold_score"][-1], base["sampled"]["gold_score"], writers))
        curve["se_gap"].append(round(standard_error(prompts, base["sampled"]["per_prompt"]) / span, 4))
        curve["per_prompt"][n] = prompts
    points, start, evaluating = [], time.time(), [0.0]  # seconds spent evaluating so far

    def evaluate(done: int, policy) -> None:
        if done not in at:
            return
        tick = time.time()
        result = evaluate_policy(policy.lm)
        point = {"batches": done, "train_seconds": round(tick - start - evaluating[0], 1)}
        for decoding in ("sampled", "greedy"):
            entry, sft_entry = result[decoding], base[decoding]
            point[decoding] = {
                "gap": gap_closed(entry["gold_score"], sft_entry["gold_score"], writers),
                "se_gap": round(standard_error(entry["per_prompt"], sft_entry["per_prompt"]) / span, 4),
                "gold_score": entry["gold_score"], "made_up": entry["hallucination"], "kl": entry.get("kl"),
                **decisive_win_rate(entry["per_prompt"], sft_entry["per_prompt"]),
                "families": {f: round(entry["table"][f]["score"] - sft_entry["table"][f]["score"], 4)
                             for f in entry["table"] if f != "all"}}
        four = curve["per_prompt"][4]
        point["sampled"]["minus_best_of_4"] = round(
            (result["sampled"]["gold_score"] - curve["gold_score"][curve["n"].index(4)]) / span, 4)
        point["sampled"]["se_minus_best_of_4"] = round(standard_error(result["sampled"]["per_prompt"], four) / span, 4)
        points.append(point)
        print(json.dumps({"batches": done, "train_seconds": point["train_seconds"]} |
                         {d: {k: point[d][k] for k in ("gap", "se_gap", "kl", "win_rate_untied")} for d in ("sampled", "greedy")}
                         | {"minus_best_of_4": point["sampled"]["minus_best_of_4"]}), flush=True)
        evaluating[0] += time.time() - tick

    _, log = train_ppo(sft, rm, tokenizer, list(world.splits["rl"]), cfg, args.seed, judge=judge, after_batch=evaluate)
    out = args.out or f"ppo_curve_{args.scale}_seed{args.seed}.json"
    Path(out).write_text(json.dumps({
        "scale": args.scale, "seed": args.seed, "torch_threads": torch.get_num_threads(), "settings": settings, "ppo": asdict(cfg), "samples_per_prompt": m,
        "n_prompts": len(tasks), "sft_gold": {d: base[d]["gold_score"] for d in base}, "writers_gold": writers,
        "best_of_n": {k: v for k, v in curve.items() if k != "per_prompt"}, "ppo_points": points,
        "train_log": log}, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
