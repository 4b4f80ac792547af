"""Checkpoints and the stage cache.

A checkpoint is a folder: ``model.safetensors`` (weights, never pickles), ``config.json`` (the
model's and the stage's configuration) and any JSON the stage adds (logs, metrics).

Stages cache their outputs under ``$RLHF_CACHE`` (default ``~/.cache/rlhf_minimal``), in a
folder named by the stage and a hash of its configuration and of the package's code. A lab that
needs an earlier stage finds it there or rebuilds it. Two processes building the same entry at
once (nbval runs labs in parallel) take turns through a file lock, and an entry is written to a
temporary folder and renamed into place, so a reader never sees half an entry.
"""
from __future__ import annotations

import ast
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file, save_file

from .model import GPT, GPTConfig


class CheckpointMismatch(ValueError):
    pass


def cache_root() -> Path:
    root = os.environ.get("RLHF_CACHE") or Path.home() / ".cache" / "rlhf_minimal"
    return Path(root)


# The module that builds each stage. Its cache key hashes the code of that module and of every
# package module it imports, directly or through others (:func:`imported_modules`): editing any
# of them invalidates the stage's entries (and, through the keys that include them, the later
# stages').
STAGE_MODULES = {"base": "pretrain", "sft": "sft", "reward": "reward", "ppo": "ppo", "dpo": "dpo",
                 "grpo": "grpo", "rejection": "rejection", "rlaif": "rlaif"}


def _imports(path: Path) -> set[str]:
    """The package modules that the file at ``path`` imports, at the top or inside functions."""
    return set(_imports_in_source(path.read_text()))


@functools.lru_cache(maxsize=256)
def _imports_in_source(source: str) -> frozenset[str]:
    """The package modules that ``source`` imports (parsed once per distinct text: every stage's
    key walks the whole import graph)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rlhf_minimal."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("rlhf_minimal."))
    return frozenset(found)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package (top level, not the exercise kits) and the modules it imports."""
    package = Path(__file__).parent
    modules = {path.stem: path for path in package.glob("*.py") if path.stem != "__init__"}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def imported_modules(module: str, graph: dict[str, set[str]] | None = None) -> list[str]:
    """``module`` and every package module it imports, directly or indirectly, sorted."""
    graph = graph or import_graph()
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph[name]
    return sorted(seen)


def code_fingerprint(modules=None) -> str:
    """Hash of the source of ``modules`` (names in the package; all of them when None)."""
    package = Path(__file__).parent
    paths = (sorted(package.glob("*.py")) if modules is None
             else [package / f"{m}.py" for m in sorted(modules)])
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def config_json(config) -> dict:
    """A configuration dataclass as JSON-ready values (tuples become lists), for keys and files."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def entry_key(stage: str, config: dict, precision: str = "") -> str:
    """The cache folder's name: the stage, a hash of its configuration, of the code of the modules
    it imports and, when one is forced, of the precision (another number format trains other
    weights)."""
    module = STAGE_MODULES.get(stage)
    code = code_fingerprint(imported_modules(module) if module else None)
    key = {"stage": stage, "config": config, "code": code}
    if precision:
        key["precision"] = precision
    text = json.dumps(key, sort_keys=True)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


BUILT: list[str] = []  # names of the entries built (not loaded) by this process, in order


def cached(stage: str, config: dict, build: Callable[[Path], None], fresh: bool = False,
           precision: str = "") -> Path:
    """The folder of the cache entry for (stage, config), calling ``build(folder)`` to make it
    when it is missing (or when ``fresh``). ``build`` writes into the folder it is given."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / entry_key(stage, config, precision)
    with open(root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds the entry done
        if fresh and final.exists():
            shutil.rmtree(final)
        if not (final / "DONE").exists():
            if final.exists():
                shutil.rmtree(final)  # left by a build that crashed
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
            try:
                build(tmp)
                (tmp / "stage.json").write_text(json.dumps({"stage": stage, "config": config}, indent=1))
                (tmp / "DONE").write_text("")
                os.replace(tmp, final)
                BUILT.append(final.name)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    return final


def save_checkpoint(folder: str | Path, model: GPT, extra: dict | None = None, **json_files) -> None:
    """Weights as safetensors, configuration as JSON, plus ``name=dict`` JSON files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model": model.config.to_dict(), **(extra or {})},
                                                   indent=1, sort_keys=True))
    for name, data in json_files.items():
        (folder / f"{name}.json").write_text(json.dumps(data, indent=1))


def load_checkpoint(folder: str | Path, expect: dict | None = None, device=None) -> GPT:
    """Load a model saved by :func:`save_checkpoint`.

    ``expect`` maps configuration keys (``"model"`` or extra keys) to the values the caller
    needs; any difference is refused with a message naming it.
    """
    folder = Path(folder)
    if not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"no checkpoint in {folder} (model.safetensors is missing)")
    config = json.loads((folder / "config.json").read_text())
    for key, want in (expect or {}).items():
        have = config.get(key)
        if have != want:
            if isinstance(want, dict) and isinstance(have, dict):
                diff = {k: (have.get(k), want.get(k)) for k in set(have) | set(want)
                        if have.get(k) != want.get(k)}
                detail = ", ".join(f"{k}: checkpoint has {a!r}, expected {b!r}" for k, (a, b) in sorted(diff.items()))
            else:
                detail = f"checkpoint has {have!r}, expected {want!r}"
            raise CheckpointMismatch(f"the checkpoint in {folder} was built with another "
                                     f"configuration ({key}: {detail}); rebuild it or load it "
                                     "with its own configuration")
    model = GPT(GPTConfig(**config["model"]))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.to(device) if device is not None else model


def cached_model(stage: str, stage_cfg: dict, build: Callable[[Path], None], settings,
                 fresh: bool = False) -> tuple[GPT, Path]:
    """A stage's model: the cache entry for ``stage_cfg`` (made by ``build(folder)`` when missing,
    see :func:`cached`), loaded onto ``settings.device`` in eval mode, and its folder. ``build``
    saves the model with ``save_checkpoint(folder, model, {"stage": stage_cfg}, ...)``."""
    folder = cached(stage, stage_cfg, build, fresh, settings.precision)
    return load_checkpoint(folder, {"stage": stage_cfg}, settings.device).eval(), folder


def read_json(folder: str | Path, name: str) -> dict:
    return json.loads((Path(folder) / f"{name}.json").read_text())


if __name__ == "__main__":  # `python -m rlhf_minimal.cache fingerprint`: used by `make book`
    import sys

    if sys.argv[1:] == ["fingerprint"]:
        print(code_fingerprint())
    else:
        raise SystemExit("usage: python -m rlhf_minimal.cache fingerprint")
