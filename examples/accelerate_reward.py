"""TRL's RewardTrainer on our SFT model and comparisons, on as many processes as accelerate starts.

Several GPUs (data parallel: each process takes its share of every batch, gradients are averaged):

    accelerate launch --multi_gpu --num_processes 4 examples/accelerate_reward.py --scale gpu --out run.json

Two CPU processes (what the test suite runs, to keep this script working without GPUs). The same
``--multi_gpu`` flag picks accelerate's multi-process launcher (torchrun underneath); without GPUs
the processes exchange gradients over gloo. (``--cpu`` would start a single process.)

    accelerate launch --multi_gpu --num_processes 2 examples/accelerate_reward.py --scale ci --out run.json

The distributed engine is accelerate's (torch.distributed underneath), not ours: the course's own
trainers stay single-device on purpose. Every process loads the cached SFT model and comparisons
(the stage cache's lock lets one build them while the others wait), exports the SFT model to its
own folder, and trains; the main process writes the report.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("ci", "cpu", "gpu"), default="ci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per process per step")
    parser.add_argument("--out", required=True, help="where the main process writes the JSON report")
    args = parser.parse_args()

    from datasets import load_from_disk

    from rlhf_minimal.interop import train_trl_reward_model
    from rlhf_minimal.reward import reward_model
    from rlhf_minimal.sft import sft_model

    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    _, tokenizer, sft, _ = sft_model(args.scale, args.seed, device="cpu")
    _, _, _, info = reward_model(args.scale, args.seed, device="cpu")
    rows = list(load_from_disk(info["comparisons"]))
    heldout = list(load_from_disk(info["heldout_comparisons"]))
    on_gpu = torch.cuda.is_available()
    overrides = {"use_cpu": not on_gpu, "bf16": on_gpu and torch.cuda.is_bf16_supported(),
                 "fp16": on_gpu and not torch.cuda.is_bf16_supported()}
    folder = Path(tempfile.mkdtemp(prefix=f"accelerate-reward-rank{rank}-"))
    _, result = train_trl_reward_model(sft, tokenizer, rows, heldout, epochs=args.epochs,
                                       batch_size=args.batch_size, seed=args.seed, output_dir=folder,
                                       config_overrides=overrides)
    if rank == 0:
        report = {"scale": args.scale, "seed": args.seed, "world_size": world_size,
                  "device": "cuda" if on_gpu else "cpu", "steps": result["steps"],
                  "seconds": result["seconds"], "heldout_accuracy": result["heldout_accuracy"],
                  "train_accuracy": result["train_accuracy"], "n_pairs": result["n_pairs"],
                  "our_reward_model_heldout_accuracy": info["evaluation"]["accuracy"],
                  "loss": result["loss"]}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(json.dumps({k: v for k, v in report.items() if k != "loss"}))


if __name__ == "__main__":
    main()
