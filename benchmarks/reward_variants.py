"""Which reward model makes best-of-16 beat SFT? A fast experiment for the `gpu` scale (chapter 6).

    python benchmarks/reward_variants.py --scale gpu --out reward_variants_gpu.json

At the `gpu` scale PPO loses to SFT, and so does best-of-16: the reward
model's favourite of 16 SFT answers is worse than a random one. Best-of-n needs no PPO, so it
tests a reward model in the time it takes to build one. It is a diagnostic, not a forecast of PPO:
at the `cpu` scale best-of-16 loses on the mean too (0.418 against 0.449 for one sample, on 2 CPU
cores), yet PPO gains (0.500). The two lean on the reward model differently: best-of-16 takes its
top pick in every family, errors included, while PPO's gain comes from a few families where the
reward model is reliable (declining unanswerable questions). So read the numbers per family and
along n.

This script samples 16 SFT answers per held-out evaluation prompt once, scores all of them with
the gold judge, and then, for each reward-model variant (built through the cache, as the pipeline
builds it), reports:

* held-out pair accuracy, its ceiling, and agreement with the gold order (the stage's own numbers);
* the gold score of best-of-16 by the reward model, against the first sample (what sampling SFT
  gives) and the best of 16 by the gold judge (what a perfect reward model would reach), overall
  and per family, and of best-of-n for n = 2, 4, 8, 16.

The variants test one hypothesis each (see VARIANTS). Set RLHF_PRECISION as for the pipeline run
(gpu_check.sh trains the `gpu` scale in fp16) so that the SFT model comes from the same cache.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not installed

from rlhf_minimal.evaluate import generate_responses  # noqa: E402
from rlhf_minimal.judge import GoldJudge  # noqa: E402
from rlhf_minimal.pretrain import PretrainConfig  # noqa: E402
from rlhf_minimal.reward import reward_model  # noqa: E402
from rlhf_minimal.scale import SCALES  # noqa: E402
from rlhf_minimal.sft import sft_model  # noqa: E402

# name -> (overrides of RewardConfig, the question it asks); "half_depth" is filled in per scale
VARIANTS = {
    "default": ({}, "the scale's reward model"),
    "k8": ({"k": 8}, "more answers per prompt: fewer prompts whose answers all tie"),
    "hot_samples": ({"sample_temperature": 1.3}, "more varied answers, more of them wrong"),
    "from_base": ({"from_sft": False}, "start from the base model instead of SFT"),
    "three_epochs": ({"epochs": 3}, "is one epoch too little?"),
    "low_lr": ({"lr": 1e-4}, "is the learning rate too high for the larger network?"),
    "half_depth": ({}, "a shallower reward model (the lower half of the network)"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="gpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=16, help="answers per prompt (default 16)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")

    start = time.time()
    world, tokenizer, sft, _ = sft_model(args.scale, args.seed)
    tasks = [t for t in world.splits["eval"] if t.lang == "a"]
    judge = GoldJudge(world)
    prompts = [t.prompt for t in tasks for _ in range(args.n)]
    answers = generate_responses(sft, tokenizer, prompts, 40, temperature=1.0, batch_size=256,
                                 seed=args.seed + 200)
    gold = [v.score for v in judge.score_many([t for t in tasks for _ in range(args.n)], answers)]
    gold = [gold[i * args.n:(i + 1) * args.n] for i in range(len(tasks))]
    families = sorted({t.family for t in tasks})

    def summary(picks: list[int]) -> dict:
        scores = [g[j] for g, j in zip(gold, picks)]
        out = {"all": round(sum(scores) / len(scores), 4)}
        for f in families:
            fs = [s for s, t in zip(scores, tasks) if t.family == f]
            out[f] = round(sum(fs) / len(fs), 4)
        return out

    report = {"scale": args.scale, "seed": args.seed, "n": args.n, "n_prompts": len(tasks),
              "first_sample": summary([0] * len(tasks)),
              "best_by_gold": summary([max(range(args.n), key=g.__getitem__) for g in gold]),
              "variants": {}}
    print(f"{len(tasks)} prompts x {args.n} SFT answers: gold of one sample "
          f"{report['first_sample']['all']:.3f}, of the best by the gold judge {report['best_by_gold']['all']:.3f}")
    n_layer = PretrainConfig.preset(args.scale).n_layer
    for name in names:
        overrides, question = VARIANTS[name]
        if name == "half_depth":
            overrides = {"n_layers": max(1, n_layer // 2)}
        t0 = time.time()
        _, _, rm, info = reward_model(args.scale, args.seed, **overrides)
        scores = rm.score(prompts, answers).view(len(tasks), args.n)
        bon = summary(scores.argmax(-1).tolist())
        # best of the first n answers, for n = 2, 4, ...: how the gold score moves as the
        # reward model is leaned on harder (chapter 7's over-optimisation curve)
        curve = {n: summary(scores[:, :n].argmax(-1).tolist())["all"]
                 for n in (2 ** i for i in range(1, args.n.bit_length())) if n <= args.n}
        ev = info["evaluation"]
        row = {"overrides": overrides, "question": question, "accuracy": ev["accuracy"],
               "ceiling": ev["ceiling"], "accuracy_vs_gold": ev["accuracy_vs_gold"],
               "n_train_pairs": ev["n_train_pairs"], "best_of_n": bon, "best_of_n_curve": curve,
               "seconds": round(time.time() - t0, 1)}
        report["variants"][name] = row
        print(f"{name:<13} accuracy {row['accuracy']:.3f} (ceiling {row['ceiling']:.3f}, gold order "
              f"{row['accuracy_vs_gold']:.3f}, {row['n_train_pairs']} pairs): best-of-{args.n} gold "
              f"{bon['all']:.3f} vs one sample {report['first_sample']['all']:.3f}; best of n "
              + ", ".join(f"{n}: {g:.3f}" for n, g in curve.items()) + f"  [{row['seconds']:.0f} s]")
    report["seconds"] = round(time.time() - start, 1)
    out = Path(args.out or f"reward_variants_{args.scale}_seed{args.seed}.json")
    out.write_text(json.dumps(report, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
