"""From InstructGPT to today, side by side (chapter 8): every method from the scale's SFT model,
scored like the pipeline's PPO (:func:`rlhf_minimal.modern_rl.comparison`, whose docstring lists
the methods and the columns).

    python benchmarks/modern_rl.py --scale cpu --seed 0 --out modern_rl_cpu_seed0.json

Lab 12 shows the recorded runs at the `cpu` scale, seeds 0 and 1 (rlhf_minimal/recorded/);
`python -m rlhf_minimal.recorded record modern_rl --scale cpu --seed 1` records one again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not installed

from rlhf_minimal.modern_rl import METHODS, comparison  # noqa: E402
from rlhf_minimal.scale import SCALES  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the report here as JSON")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="the methods to compare (default: all); the report lists those left out")
    args = parser.parse_args(argv)
    report = comparison(args.scale, args.seed, args.methods)
    for name, r in report["methods"]["sampled"].items():
        print(f"{name:<14} gold {r['gold_score']:.3f}  gap {r['gap_closed']:+.2f}  acc {r['acceptable']:.3f}  "
              f"untied win {r['win_rate_untied']:.3f}  KL {r.get('kl_to_sft', float('nan')):.2f}  "
              f"verifiable {r['verifiable']['gold_score']:.3f}  unverifiable {r['unverifiable']['gold_score']:.3f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
