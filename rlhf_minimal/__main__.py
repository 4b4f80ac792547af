"""The command line: ``python -m rlhf_minimal run|bench`` (also installed as ``rlhf-minimal``).

    python -m rlhf_minimal run --scale cpu --seed 0 --out report.json
    python -m rlhf_minimal bench --scale cpu --device cpu --out bench.json
"""
from __future__ import annotations

import argparse
import sys

from .scale import SCALES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rlhf_minimal",
        description="RLHF from scratch: run the whole pipeline or measure its throughput.")
    sub = parser.add_subparsers(dest="command", metavar="{run,bench}")
    sub.required = True
    run = sub.add_parser("run", help="pretraining, SFT, reward model and PPO, then the evaluation",
                         description="Run stages 0-3 (cached), print a summary table and write a JSON report.")
    run.add_argument("--scale", choices=SCALES, default=None,
                     help="ci, cpu or gpu (default: $RLHF_SCALE, else cpu, also on a GPU)")
    run.add_argument("--seed", type=int, default=0, help="seed of the world and of every stage (default 0)")
    run.add_argument("--out", default=None, help="where to write the JSON report (default rlhf_report_<scale>_seed<seed>.json)")
    run.add_argument("--fresh", action="store_true", help="rebuild every stage, ignoring the cache")
    run.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bench = sub.add_parser("bench", help="tokens per second of generation and of each training stage",
                           description="Measure throughput at a scale's sizes and write JSON.")
    bench.add_argument("--scale", choices=SCALES, default="cpu", help="sizes to measure (default cpu)")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--threads", type=int, default=None, help="CPU threads torch may use (for example 2)")
    bench.add_argument("--repeats", type=int, default=3, help="timed repeats of each measurement (default 3)")
    bench.add_argument("--out", default=None, help="where to write the JSON (default bench_<scale>_<device>.json)")
    return parser


def _device(parser, name):
    import torch

    if name is None:
        return None
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        parser.error(f"--device must be cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu")
    return torch.device(name)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    device = _device(parser, args.device)
    if args.command == "run":
        from .pipeline import run_pipeline, summary_text
        from .scale import current_scale

        if args.seed < 0:
            parser.error(f"--seed must be a non-negative integer, got {args.seed}")
        scale = current_scale(args.scale)
        out = args.out or f"rlhf_report_{scale}_seed{args.seed}.json"
        report = run_pipeline(scale, args.seed, args.fresh, device, out)
        print()
        print(summary_text(report))
        print(f"\nreport written to {out}")
    else:
        import torch

        from .bench import bench, write

        if args.threads is not None:
            if args.threads < 1:
                parser.error(f"--threads must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        if args.repeats < 1:
            parser.error(f"--repeats must be at least 1, got {args.repeats}")
        result = bench(args.scale, device, args.repeats)
        out = args.out or f"bench_{args.scale}_{result['device'].split(':')[0]}.json"
        write(result, out)
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
