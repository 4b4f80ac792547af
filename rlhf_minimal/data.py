"""Data sets as ``datasets.Dataset``, with the columns TRL reads.

* demonstrations: ``prompt`` / ``completion`` (+ ``family``, ``task``, ``writer``, ``lang``)
* prompts: ``prompt`` (+ ``family``, ``task``, ``lang``)

``task`` is the JSON answer key the gold judge needs. Bad rows are refused with a message naming
the row; nothing is dropped or truncated silently.
"""
from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_from_disk

from .world import World, demonstrations


class DataError(ValueError):
    pass


def demonstrations_dataset(world: World, split: str = "sft", sloppy_share: float | None = None) -> Dataset:
    return Dataset.from_list(demonstrations(world, split, sloppy_share))


def prompts_dataset(world: World, split: str) -> Dataset:
    if split not in world.splits:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(world.splits)}")
    return Dataset.from_list([{"prompt": t.prompt, "family": t.family, "task": t.to_json(),
                               "lang": t.lang} for t in world.splits[split]])


def validate(rows, required: tuple) -> None:
    """Every row has every required column, as a non-empty string."""
    columns = rows.column_names if hasattr(rows, "column_names") else (list(rows[0]) if len(rows) else [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"the data set has no column {', '.join(repr(m) for m in missing)} "
                        f"(it has {', '.join(columns)}); expected columns {', '.join(required)}")
    for i, row in enumerate(rows):
        for column in required:
            value = row[column]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"row {i}: {column!r} is empty or not text ({value!r}); "
                                "fix or remove that row")


def save(dataset: Dataset, path: str | Path) -> None:
    dataset.save_to_disk(str(path))


def load(path: str | Path) -> Dataset:
    return load_from_disk(str(path))
