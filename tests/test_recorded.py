"""The recorded runs of the labs' longer experiments (rlhf_minimal/recorded.py): every recorded file
is complete and has the shape a fresh run gives today; loading never runs the experiment; a run
and a load look the same to a lab; the installed package ships every recorded file."""
import json
import re
import subprocess
import sys

import pytest

from rlhf_minimal import recorded

FILES = sorted(recorded.RECORDED.glob("*.json"))
NAME = re.compile(r"(?P<experiment>[a-z_]+)_(?P<scale>ci|cpu|gpu)_seed(?P<seed>\d+)\.json")


def shape(value, depth=3):
    """The structure of a JSON value down to ``depth``: dict keys, list of the first item's shape,
    or the type of a leaf (ints and floats alike: a count may be a whole float)."""
    if isinstance(value, dict):
        return {k: shape(v, depth - 1) for k, v in value.items()} if depth > 0 else "dict"
    if isinstance(value, list):
        return ["list", shape(value[0], depth - 1) if value and depth > 0 else None]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def test_every_experiment_of_the_labs_is_recorded_at_the_cpu_scale():
    for name in recorded.EXPERIMENTS:
        assert recorded.recorded_path(name, "cpu", 0).exists(), \
            f"record it: python -m rlhf_minimal.recorded record {name} --scale cpu"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_a_recorded_file_is_complete_and_named_after_what_it_holds(path):
    match = NAME.fullmatch(path.name)
    assert match, f"{path.name} is not EXPERIMENT_SCALE_seedSEED.json"
    data = json.loads(path.read_text())
    assert set(data) == {"experiment", "scale", "seed", "machine", "date", "seconds", "code", "result"}
    assert data["experiment"] == match["experiment"] and data["experiment"] in recorded.EXPERIMENTS
    assert data["scale"] == match["scale"] and data["seed"] == int(match["seed"])
    assert data["seconds"] > 0 and data["machine"] and re.fullmatch(r"\d{4}-\d\d-\d\d", data["date"])
    assert re.fullmatch(r"[0-9a-f]{12}", data["code"]) and data["result"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_loading_a_recorded_run_never_runs_it(path, monkeypatch):
    data = json.loads(path.read_text())

    def refuse(name):
        raise AssertionError(f"{name} was run although a recorded run exists")

    monkeypatch.setattr(recorded, "experiment_function", refuse)
    said = []
    got = recorded.recorded_or_run(data["experiment"], data["scale"], data["seed"], echo=said.append)
    assert got == data["result"]
    assert data["date"] in said[0] and "RERUN = True" in said[0]


@pytest.mark.parametrize("name", list(recorded.EXPERIMENTS))
def test_a_fresh_run_has_the_shape_of_the_recorded_one(name):
    """At the ci scale (no recorded run there, so the experiment runs), the result has the keys
    and types the recorded cpu run has: a lab reads both the same way."""
    fresh = recorded.recorded_or_run(name, "ci", 0, echo=lambda _: None)
    kept = recorded.load(name, "cpu", 0)["result"]
    depth = 2 if "evaluation" in kept else 3  # the evaluation's families differ between scales
    assert shape(fresh, depth) == shape(kept, depth)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A throw-away experiment that records into tmp_path and counts its runs."""
    runs = []

    def experiment(scale, seed):
        runs.append((scale, seed))
        return {"pairs": (3, 4), 7: "seven", "accuracy": 0.625}

    monkeypatch.setattr(recorded, "RECORDED", tmp_path)
    monkeypatch.setitem(recorded.EXPERIMENTS, "toy", ("pieces", "toy", "no lab"))
    monkeypatch.setattr(recorded, "experiment_function", lambda name: experiment)
    return runs


def test_a_run_reads_like_the_recorded_file(toy):
    ran = recorded.recorded_or_run("toy", "cpu", 3, echo=lambda _: None)
    path = recorded.record("toy", "cpu", 3, machine="a test", echo=lambda _: None)
    loaded = recorded.recorded_or_run("toy", "cpu", 3, echo=lambda _: None)
    assert toy == [("cpu", 3), ("cpu", 3)]  # the third call loaded
    assert ran == loaded == {"pairs": [3, 4], "7": "seven", "accuracy": 0.625}
    assert path.name == "toy_cpu_seed3.json" and json.loads(path.read_text())["machine"] == "a test"


def test_rerun_runs_even_when_a_recorded_run_exists(toy):
    recorded.record("toy", "cpu", 0, echo=lambda _: None)
    recorded.recorded_or_run("toy", "cpu", 0, rerun=True, echo=lambda _: None)
    assert len(toy) == 2


def test_loading_says_when_the_code_changed_since_the_recording(toy, monkeypatch):
    recorded.record("toy", "cpu", 0, echo=lambda _: None)
    said = []
    recorded.recorded_or_run("toy", "cpu", 0, echo=said.append)
    assert len(said) == 1
    monkeypatch.setattr(recorded, "experiment_code", lambda name: "0" * 12)
    recorded.recorded_or_run("toy", "cpu", 0, echo=said.append)
    assert "code has changed" in said[2] and "record toy --scale cpu --seed 0" in said[2]


def test_bad_names_and_missing_runs_say_what_to_do(toy, monkeypatch):
    with pytest.raises(recorded.UnknownExperiment, match="k_study"):
        recorded.recorded_or_run("k_sutdy", "cpu", 0)
    with pytest.raises(FileNotFoundError, match="python -m rlhf_minimal.recorded record toy --scale gpu --seed 1"):
        recorded.load("toy", "gpu", 1)
    monkeypatch.setattr(recorded, "experiment_function", lambda name: lambda scale, seed: {"model": object()})
    with pytest.raises(TypeError, match="JSON values"):
        recorded.run("toy", "cpu", 0, echo=lambda _: None)


def test_the_installed_package_ships_every_recorded_run(tmp_path):
    """Run from outside the checkout, so that Python finds the installed package (a plain install,
    as Colab's set-up cell makes, in the Colab-like check; the editable one here)."""
    listing = subprocess.run([sys.executable, "-c", "from rlhf_minimal.recorded import RECORDED; "
                              "print(*sorted(p.name for p in RECORDED.glob('*.json')))"],
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert listing == [p.name for p in FILES]
