"""What the reward model learns from how many comparisons, under which labels (chapter 4's figure).

    python benchmarks/reward_curve.py --scale cpu --seeds 0 1 --out reward_curve_cpu.json

For each seed, each kind of label and each number of training prompts, trains the scale's reward
model through the stage itself (``reward_model`` with overrides, so the stage cache keeps every
point) and records its accuracy on the test set's labels, the labelers' ceiling there, and the
share of test pairs it orders like the gold judge, overall and by kind of difference.

The kinds of label:

* ``noiseless``: one labeler per prompt who always follows the gold score (no noise, no taste);
* ``realistic``: the course's team (``REALISTIC_LABELERS``): tastes of their own, rarely wrong
  on a false fact, three of them voting on every prompt;
* ``noisy``: the earlier team (``NOISY_LABELERS``): one labeler per prompt, as likely to slip on
  a false fact as on taste.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not installed

from rlhf_minimal.device import describe_environment  # noqa: E402
from rlhf_minimal.reward import NOISY_LABELERS, REALISTIC_LABELERS, reward_model  # noqa: E402
from rlhf_minimal.scale import SCALES  # noqa: E402

LABELS = {
    "noiseless": dict(labeler_temperature=1e-4, labeler_bias_std=0.0, labeler_filler_range=None,
                      labeler_decline_range=None, votes=1),
    "realistic": REALISTIC_LABELERS,
    "noisy": NOISY_LABELERS,
}


def curve(scale: str, seeds, labels, prompts, echo=print) -> list[dict]:
    """One row per (seed, kind of label, number of training prompts; None: all of them)."""
    rows = []
    for seed in seeds:
        for kind in labels:
            for n in prompts:
                start = time.time()
                _, _, _, info = reward_model(scale, seed, max_prompts=n, **LABELS[kind])
                ev, log = info["evaluation"], info["log"]
                row = {"seed": seed, "labels": kind, "max_prompts": n, "n_train_prompts": ev["n_train_prompts"],
                       "n_train_pairs": ev["n_train_pairs"], "accuracy": ev["accuracy"], "ceiling": ev["ceiling"],
                       "accuracy_vs_gold": ev["accuracy_vs_gold"], "gold_order": ev["gold_order"],
                       "labeler_labeler": ev["agreement"]["labeler_labeler"],
                       "n_heldout_pairs": ev["n_heldout_pairs"], "best_epoch": log.get("best_epoch"),
                       "train_seconds": log.get("seconds"), "seconds": round(time.time() - start, 1)}
                echo(f"seed {seed} {kind:<10} {row['n_train_pairs']:>6} pairs: gold order "
                     f"{row['accuracy_vs_gold']:.3f}, accuracy {row['accuracy']:.3f} (ceiling {row['ceiling']:.3f})")
                rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--labels", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--prompts", type=int, nargs="+", default=[500, 1500],
                        help="numbers of training prompts; the whole split is always added")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if any(n < 2 for n in args.prompts):
        parser.error("--prompts must be at least 2")
    env = describe_environment()
    rows = curve(args.scale, args.seeds, args.labels, [*sorted(args.prompts), None])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"scale": args.scale, "rows": rows, "cpu_threads": env["cpu_threads"],
                                    "platform": env["platform"], "torch": env["torch"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
