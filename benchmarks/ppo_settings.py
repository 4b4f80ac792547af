"""How far should PPO travel? PPO's KL coefficient and rollout budget against best-of-4 (chapter 6).

    python benchmarks/ppo_settings.py --scale cpu --seed 0 --out ppo_settings_cpu.json

Every setting trains PPO from the scale's cached SFT and reward models (so only PPO varies) and
is evaluated exactly as the pipeline evaluates it (``evaluate_ppo``): gold score and win rate
against SFT, sampled and greedy, and the KL to SFT, beside best-of-4 and best-of-16 from the same
reward model. A setting is a JSON object of :class:`~rlhf_minimal.ppo.PPOConfig` fields, applied
over the scale's preset; ``{}`` is the preset itself.

The default list asks two questions. Does a larger beta (a shorter leash on SFT) help once PPO
has more rollouts? And is adapting beta towards a target KL better than fixing it?
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not installed

from rlhf_minimal.device import describe_environment, pick_device  # noqa: E402
from rlhf_minimal.judge import GoldJudge  # noqa: E402
from rlhf_minimal.evaluate import BEST_OF, best_of_n, best_of_n_curve, evaluate_ppo  # noqa: E402
from rlhf_minimal.ppo import PPOConfig, train_ppo  # noqa: E402
from rlhf_minimal.reward import reward_model  # noqa: E402
from rlhf_minimal.scale import SCALES  # noqa: E402
from rlhf_minimal.sft import sft_model  # noqa: E402

FOUR_TIMES = {"steps": 80, "prompts_per_step": 128, "minibatch_size": 32}  # the gpu scale's budget
SETTINGS = [
    {},
    {"kl_coef": 0.3},
    {"steps": 80, "kl_coef": 0.3},
    FOUR_TIMES,
    {**FOUR_TIMES, "kl_coef": 0.2},
    {**FOUR_TIMES, "kl_coef": 0.3},
    {**FOUR_TIMES, "kl_coef": 0.5},
    {**FOUR_TIMES, "adaptive_kl": True, "target_kl": 1.0},
]


def parse_settings(text: str) -> list[dict]:
    """A JSON list of objects whose keys are PPOConfig fields; a clear error otherwise."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--settings must be a JSON list of objects, e.g. '[{{}}, {{\"kl_coef\": 0.3}}]': {err}")
    known = {f.name for f in fields(PPOConfig)}
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        raise SystemExit("--settings must be a JSON list of objects, e.g. '[{}, {\"kl_coef\": 0.3}]'")
    for setting in settings:
        unknown = set(setting) - known
        if unknown:
            raise SystemExit(f"--settings: {sorted(unknown)} are not PPOConfig fields; "
                             f"choose among {sorted(known)}")
    return settings


def _row(entry: dict) -> dict:
    return {"gold_score": entry["gold_score"], "win_rate_vs_sft": entry["head_to_head_vs_sft"]["win_rate"],
            **({"kl_to_sft": entry["kl"]} if "kl" in entry else {})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=None,
                        help="a JSON list of PPOConfig overrides (default: the list in this script)")
    parser.add_argument("--out", default=None, help="write the report here as JSON")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings) if args.settings else SETTINGS

    device = pick_device()
    world, tokenizer, sft, _ = sft_model(args.scale, args.seed, device=device)
    _, _, rm, _ = reward_model(args.scale, args.seed, device=device)
    judge, rl_tasks = GoldJudge(world), list(world.splits["rl"])
    env = describe_environment()
    report = {"scale": args.scale, "seed": args.seed, "device": str(device), "gpu": env["gpu"],
              "cpu_threads": env["cpu_threads"], "torch": env["torch"], "runs": []}
    baselines = None
    for setting in settings:
        cfg = replace(PPOConfig.preset(args.scale), **setting)
        start = time.time()
        policy, log = train_ppo(sft, rm, tokenizer, rl_tasks, cfg, args.seed, device, judge)
        seconds = round(time.time() - start, 1)
        evaluation = evaluate_ppo(policy.lm, sft, rm, tokenizer, world, cfg, args.seed)
        run = {"setting": setting, "config": asdict(cfg), "train_seconds": seconds,
               "kl_coef_last": log["kl_coef"][-1] if log.get("kl_coef") else cfg.kl_coef,
               "sampled": {"sft": _row(evaluation["sampled"]["sft"]), "ppo": _row(evaluation["sampled"]["ppo"])},
               "greedy": {"sft": _row(evaluation["greedy"]["sft"]), "ppo": _row(evaluation["greedy"]["ppo"])}}
        report["runs"].append(run)
        baselines = {k: _row(v) for k, v in evaluation["sampled"].items() if k.startswith("best_of_")}
        s, g = run["sampled"]["ppo"], run["greedy"]["ppo"]
        print(f"{json.dumps(setting):<70} KL {s['kl_to_sft']:.2f}  sampled {s['gold_score']:.3f} "
              f"(win {s['win_rate_vs_sft']:.3f})  greedy {g['gold_score']:.3f} (win {g['win_rate_vs_sft']:.3f})"
              f"  {seconds:.0f} s", flush=True)
    report["best_of_n"] = baselines  # the same for every setting: SFT and the reward model are fixed
    # the whole best-of-n curve, from the very draw evaluate_ppo picked best-of-4 and -16 from
    cfg = PPOConfig.preset(args.scale)
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    n_max = max(BEST_OF)
    draw = best_of_n(sft, rm, tokenizer, tasks, n_max, cfg.temperature, cfg.max_new_tokens, args.seed + 200)
    report["best_of_n_curve"] = best_of_n_curve(draw, tasks, judge, ns=[n for n in (1, 2, 4, 8, 16, 32) if n <= n_max])
    for name, row in (baselines or {}).items():
        print(f"{name:<70} KL {row['kl_to_sft']:.2f}  sampled {row['gold_score']:.3f} "
              f"(win {row['win_rate_vs_sft']:.3f})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
