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

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file, save_file

from .model import GPT, GPTConfig


class CheckpointMismatch(ValueError):
    pass


def cache_root() -> Path:
    root = os.environ.get("RLHF_CACHE") or Path.home() / ".cache" / "rlhf_minimal"
    return Path(root)


# The modules whose code each stage's output depends on: editing one invalidates that stage's
# cache entries (and, through the keys that include them, the later stages').
STAGE_CODE = {
    "base": ("world", "tokenizer", "model", "train", "pretrain"),
    "sft": ("world", "tokenizer", "model", "train", "pretrain", "sft", "data", "judge", "evaluate"),
    "reward": ("world", "tokenizer", "model", "train", "pretrain", "sft", "data", "judge",
               "evaluate", "preference", "reward"),
    "ppo": ("world", "tokenizer", "model", "train", "pretrain", "sft", "data", "judge",
            "evaluate", "preference", "reward", "ppo"),
    "dpo": ("world", "tokenizer", "model", "train", "pretrain", "sft", "data", "judge",
            "evaluate", "preference", "reward", "ppo", "dpo"),
}


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


def entry_key(stage: str, config: dict) -> str:
    code = code_fingerprint(STAGE_CODE.get(stage))
    key = {"stage": stage, "config": config, "code": code}
    precision = os.environ.get("RLHF_PRECISION", "").strip().lower()
    if precision:  # a forced number format trains other weights (unset: the device's own, as before)
        key["precision"] = precision
    text = json.dumps(key, sort_keys=True)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


BUILT: list[str] = []  # names of the entries built (not loaded) by this process, in order


def cached(stage: str, config: dict, build: Callable[[Path], None], fresh: bool = False) -> Path:
    """The folder of the cache entry for (stage, config), calling ``build(folder)`` to make it
    when it is missing (or when ``fresh``). ``build`` writes into the folder it is given."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / entry_key(stage, config)
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


def read_json(folder: str | Path, name: str) -> dict:
    return json.loads((Path(folder) / f"{name}.json").read_text())


if __name__ == "__main__":  # `python -m rlhf_minimal.cache fingerprint`: used by `make book`
    import sys

    if sys.argv[1:] == ["fingerprint"]:
        print(code_fingerprint())
    else:
        raise SystemExit("usage: python -m rlhf_minimal.cache fingerprint")
