"""Print the numbers of a `gpu_check.sh` run: python benchmarks/summarize.py OUTDIR [options]."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def phase_rates(bench: dict) -> dict:
    return {"generation (KV cache)": bench["generation"]["with_cache"]["tokens_per_second"],
            "generation (no cache)": bench["generation"]["without_cache"]["tokens_per_second"],
            "pretraining": bench["training"]["pretrain"]["tokens_per_second"],
            "SFT": bench["training"]["sft"]["tokens_per_second"],
            "reward model": bench["training"]["reward"]["tokens_per_second"],
            "PPO iteration (episodes/s)": bench["ppo_iteration"]["episodes_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--small", default="cpu")
    parser.add_argument("--big", default="gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reference", default=None, help="a run of the small scale on 2 CPU cores")
    args = parser.parse_args()
    out = Path(args.out)
    summary = {}
    cpu = load(out / f"bench_{args.small}_on_cpu2.json")
    dev = load(out / f"bench_{args.small}_on_{args.device}.json")
    big = load(out / f"bench_{args.big}_on_{args.device}.json")
    graphed = load(out / f"bench_{args.small}_on_{args.device}_graphs.json")
    for key, bench in (("small_config_ratio", dev), ("small_config_ratio_graphs", graphed)):
        if not (cpu and bench):
            continue
        print(f"\nthroughput of the {args.small} configuration: 2 CPU threads vs {bench['device']} "
              f"({bench['environment'].get('gpu') or 'cpu'}, {bench['precision']}, "
              f"{'CUDA graphs' if bench.get('graphs') else 'eager'})")
        a, b = phase_rates(cpu), phase_rates(bench)
        summary[key] = {}
        for phase in a:
            ratio = b[phase] / a[phase]
            summary[key][phase] = round(ratio, 2)
            print(f"  {phase:<28}{a[phase]:>12.1f}{b[phase]:>12.1f}   x{ratio:.1f}")
    for name, bench in (("small", dev), ("big", big)):
        if bench:
            g = bench["generation"]
            print(f"KV-cache speed-up ({bench['scale']} configuration, {bench['device']}): "
                  f"x{g['kv_cache_speedup']} ({g['with_cache']['tokens_per_second']:.0f} vs "
                  f"{g['without_cache']['tokens_per_second']:.0f} tokens/s); PPO rollout share "
                  f"{bench['ppo_iteration']['rollout_share']:.2f}")
            summary[f"kv_cache_speedup_{bench['scale']}"] = g["kv_cache_speedup"]
            for k, v in bench["training"].items():
                if v.get("seconds_per_step_new_width") is None:
                    continue
                cudnn = v.get("seconds_per_step_new_width_with_cudnn_attention")
                print(f"  {k} step: repeated shape {1000 * v['seconds_per_step']:.1f} ms, new width "
                      f"{1000 * v['seconds_per_step_new_width']:.1f} ms"
                      + (f", new width with cuDNN attention {1000 * cudnn:.1f} ms" if cudnn else ""))
    reference = load(Path(args.reference)) if args.reference else None
    for scale, suffix in ((args.big, ""), (args.small, ""), (args.small, "_graphs")):
        run = load(out / f"run_{scale}_on_{args.device}{suffix}.json")
        if not run:
            continue
        print(f"\nwhole pipeline, scale {scale} on {run['device']} ({run.get('gpu') or 'cpu'}), "
              f"precision {run['precision']}{', CUDA graphs' if run.get('cuda_graphs') else ''}: "
              f"{run['total_seconds']:.0f} s")
        for stage, row in run["stages"].items():
            ref = reference["stages"].get(stage) if reference and scale == args.small else None
            extra = (f"   2 CPU cores: {ref['seconds']:.1f} s, x{ref['seconds'] / max(row['seconds'], 1e-9):.1f}"
                     if ref else "")
            print(f"  {stage:<14}{row['seconds']:>8.1f} s{extra}")
        if reference and scale == args.small:
            ratio = reference["total_seconds"] / run["total_seconds"]
            summary[f"small_pipeline_ratio{suffix}"] = round(ratio, 2)
            print(f"  whole pipeline vs 2 CPU cores ({reference['total_seconds']:.0f} s): x{ratio:.1f}")
        if run.get("peak_gpu_memory_gb") is not None:
            print(f"  peak GPU memory {run['peak_gpu_memory_gb']:.2f} GB")
        for decoding in ("sampled", "greedy"):
            row = run["results"][decoding]
            cells = ", ".join(f"{k} {v['gold_score']:.3f} (win {v['win_rate_vs_sft']:.2f})" for k, v in row.items())
            print(f"  gold {decoding}: {cells}")
        rm = run["reward_model"]
        print(f"  reward model {rm['accuracy']:.3f} vs ceiling {rm['ceiling']:.3f}; PPO KL "
              f"{run['results']['sampled']['ppo'].get('kl_to_sft', float('nan')):.2f}; made-up answers SFT "
              f"{run['results']['sampled']['sft']['hallucination']:.2f} -> PPO {run['results']['sampled']['ppo']['hallucination']:.2f}")
        summary[f"run_{scale}{suffix}"] = {"total_seconds": run["total_seconds"],
                                   "peak_gpu_memory_gb": run.get("peak_gpu_memory_gb")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
