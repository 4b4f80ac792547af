"""Recorded runs: the labs' longer experiments, run once at the ``cpu`` scale and shipped with the
package, so that a lab shows their results in seconds and runs them again with one flag.

Each experiment is a function of the package, ``fn(scale, seed) -> dict or list`` of JSON values
(:data:`EXPERIMENTS`). Its recorded run is ``rlhf_minimal/recorded/EXPERIMENT_SCALE_seedSEED.json``::

    {"experiment": ..., "scale": ..., "seed": ..., "machine": ..., "date": ..., "seconds": ...,
     "code": ..., "result": ...}

``code`` fingerprints the source of the experiment's module and of every package module it
imports; when that source has changed since the run was recorded, loading says so (a new run may
give other numbers). Runs are recorded for the ``cpu`` scale; at any other scale (``ci`` in the
tests, ``gpu`` on a GPU) the lab runs the experiment itself.

Record (or refresh) them with one command, on a quiet machine::

    python -m rlhf_minimal.recorded record --all --scale cpu --machine "2 CPU cores"
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from datetime import date
from pathlib import Path
from typing import Callable

from .cache import code_fingerprint, imported_modules
from .scale import SCALES, current_scale

RECORDED = Path(__file__).parent / "recorded"

# experiment name -> (module, function, the lab that shows it)
EXPERIMENTS = {
    "k_study": ("reward", "k_study", "lab 3"),
    "depth_study": ("reward", "depth_study", "lab 4"),
    "size_sweep": ("pipeline", "size_sweep", "lab 6"),
    "trl_comparison": ("interop", "trl_comparison", "lab 7"),
    "trl_dpo_comparison": ("interop", "trl_dpo_comparison", "lab 11"),
    "modern_rl": ("modern_rl", "comparison", "lab 12"),
}


class UnknownExperiment(KeyError):
    pass


def _entry(name: str) -> tuple[str, str, str]:
    if name not in EXPERIMENTS:
        raise UnknownExperiment(f"no experiment named {name!r}; the recorded experiments are "
                                f"{', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


def experiment_function(name: str) -> Callable:
    """The package function that runs experiment ``name``."""
    module, function, _ = _entry(name)
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def experiment_code(name: str) -> str:
    """Fingerprint of the source the experiment runs: its module and every package module that
    module imports."""
    return code_fingerprint(imported_modules(_entry(name)[0]))


def recorded_path(name: str, scale: str, seed: int) -> Path:
    _entry(name)
    return RECORDED / f"{name}_{scale}_seed{seed}.json"


def load(name: str, scale: str, seed: int) -> dict:
    """The whole recorded file (metadata and ``result``) of experiment ``name``."""
    path = recorded_path(name, scale, seed)
    if not path.exists():
        raise FileNotFoundError(f"no recorded run of {name!r} at the {scale!r} scale with seed {seed} "
                                f"({path.name}); run it with recorded_or_run(..., rerun=True) or record it "
                                f"with: python -m rlhf_minimal.recorded record {name} --scale {scale} --seed {seed}")
    return json.loads(path.read_text())


def _as_json(result):
    """``result`` as it reads back from JSON (tuples become lists, keys strings), so that a fresh
    run and a loaded one look the same to the lab; refuses what JSON cannot hold."""
    try:
        return json.loads(json.dumps(result, allow_nan=True))
    except TypeError as error:
        raise TypeError(f"an experiment must return JSON values (dicts, lists, numbers, strings): {error}") from None


def run(name: str, scale: str | None = None, seed: int = 0, echo=print) -> tuple[object, float]:
    """Run experiment ``name`` now; its result (as JSON reads it back) and the seconds it took."""
    scale = current_scale(scale)
    start = time.perf_counter()
    result = _as_json(experiment_function(name)(scale, seed))
    seconds = round(time.perf_counter() - start, 1)
    echo(f"{name}: ran at the {scale} scale, seed {seed}, in {seconds:.0f} s")
    return result, seconds


def recorded_or_run(name: str, scale: str | None = None, seed: int = 0, rerun: bool = False, echo=print):
    """The result of experiment ``name``: the recorded run when there is one for (scale, seed) and
    ``rerun`` is False; otherwise the experiment runs here (and nothing is written)."""
    scale = current_scale(scale)
    path = recorded_path(name, scale, seed)
    if rerun or not path.exists():
        return run(name, scale, seed, echo)[0]
    data = load(name, scale, seed)
    echo(f"{name}: the run recorded on {data['date']} ({data['machine']}, {data['seconds'] / 60:.1f} min); "
         "set RERUN = True to run it here")
    if data["code"] != experiment_code(name):
        echo(f"  (the package's code has changed since that run: a new run may give other numbers; "
             f"refresh it with python -m rlhf_minimal.recorded record {name} --scale {scale} --seed {seed})")
    return data["result"]


def record(name: str, scale: str, seed: int = 0, machine: str | None = None, echo=print) -> Path:
    """Run experiment ``name`` and write its recorded file (replacing an older one)."""
    result, seconds = run(name, scale, seed, echo)
    data = {"experiment": name, "scale": scale, "seed": seed,
            "machine": machine or f"{platform.machine()}, {platform.processor() or 'CPU'}",
            "date": date.today().isoformat(), "seconds": seconds, "code": experiment_code(name),
            "result": result}
    path = recorded_path(name, scale, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    echo(f"wrote {path}")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlhf_minimal.recorded", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run experiments and write their recorded files")
    rec.add_argument("names", nargs="*", help=f"experiments: {', '.join(EXPERIMENTS)}")
    rec.add_argument("--all", action="store_true", help="every experiment")
    rec.add_argument("--scale", default="cpu", choices=list(SCALES))
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--machine", default=None, help='what ran it, for the file (e.g. "2 CPU cores")')
    sub.add_parser("list", help="the experiments and their recorded files")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, (module, function, lab) in EXPERIMENTS.items():
            files = sorted(p.name for p in RECORDED.glob(f"{name}_*.json"))
            print(f"{name:<20}{lab:<8}{module}.{function:<22}{', '.join(files) or '(none recorded)'}")
        return
    names = list(EXPERIMENTS) if args.all else args.names
    if not names:
        parser.error("name the experiments to record, or give --all")
    for name in names:
        _entry(name)
    for name in names:
        record(name, args.scale, args.seed, args.machine)


if __name__ == "__main__":
    main()
