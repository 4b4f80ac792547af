"""PPO's rollout budget and KL coefficient with the course's reward model, against best-of-4 (chapter 6).

    python benchmarks/ppo_budget.py --scale cpu --seed 0 --out ppo_budget_cpu_seed0.json

Each setting is a JSON object of :class:`~rlhf_minimal.ppo.PPOConfig` fields over the scale's
preset, trained by the PPO stage itself (``ppo_policy``, so the cached SFT and reward models are
shared and a setting equal to the preset reproduces the pipeline's PPO row) and evaluated as the
pipeline evaluates it. For each it prints and saves the gap closed from SFT to the demonstration
writers (sampled and greedy), the win rate among untied prompts with the tie share, the KL to SFT,
the made-up answers to unanswerable questions, and the task family that changed most for the
worse in each decoding, beside best-of-4 from the same reward model.

``benchmarks/results/ppo_budget_cpu_on_cpu2.json`` was measured against the reward model's head
alone, before it had a prior; ``--reward '{"likelihood_prior": false}'`` trains that one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not installed

from rlhf_minimal.pipeline import decisive_win_rate, gap_closed, writers_entry  # noqa: E402
from rlhf_minimal.ppo import ppo_policy  # noqa: E402
from rlhf_minimal.scale import SCALES  # noqa: E402

SETTINGS = [
    {"steps": 60, "kl_coef": 0.05},
    {"steps": 60, "kl_coef": 0.1},
    {"steps": 120, "kl_coef": 0.05},
    {"steps": 120, "kl_coef": 0.1},
    {"steps": 120, "kl_coef": 0.1, "lr": 5e-5},
    {"steps": 240, "kl_coef": 0.1},
]


def summarise(world, evaluation: dict) -> dict:
    """The headline numbers of one PPO run's evaluation (``info["evaluation"]``)."""
    by_prompt = {t.prompt: t for t in world.splits["eval"]}
    writers = writers_entry(world, [by_prompt[p] for p in evaluation["prompts"]])
    out = {}
    for decoding in ("sampled", "greedy"):
        sft = evaluation[decoding]["sft"]
        for name in ("ppo", "best_of_4") if decoding == "sampled" else ("ppo",):
            entry = evaluation[decoding][name]
            out[f"{decoding}:{name}"] = {
                "gap": gap_closed(entry["gold_score"], sft["gold_score"], writers["gold_score"]),
                **decisive_win_rate(entry["scores"], sft["scores"]),
                "kl": entry.get("kl"), "made_up": entry["hallucination"]}
        families = evaluation[decoding]["ppo"]["table"]
        out[f"{decoding}:worst_family_change"] = min(
            (round(families[f]["score"] - sft["table"][f]["score"], 4), f) for f in families if f != "all")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=None, help="a JSON list of PPOConfig overrides (default: the sweep above)")
    parser.add_argument("--reward", default=None,
                        help='RewardConfig overrides as JSON, e.g. \'{"likelihood_prior": false}\'')
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    settings = json.loads(args.settings) if args.settings else SETTINGS
    reward = json.loads(args.reward) if args.reward else None
    rows = []
    for setting in settings:
        world, _, _, info = ppo_policy(args.scale, args.seed, reward=reward, **setting)
        rows.append({"setting": setting, "result": summarise(world, info["evaluation"]),
                     "train_seconds": info["log"]["seconds"]})
        print(json.dumps(rows[-1]), flush=True)
    out = args.out or f"ppo_budget_{args.scale}_seed{args.seed}.json"
    Path(out).write_text(json.dumps({"scale": args.scale, "seed": args.seed, "reward": reward, "rows": rows}, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
