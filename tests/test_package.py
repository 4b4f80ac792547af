"""The package as a codebase to read: no import cycle, PPO's update on one screen, every scale's
presets in one table and valid."""
import ast
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlhf_minimal"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that ``path`` imports anywhere in it (also inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = ".".join(base[:len(base) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            # "from . import x" imports the module x; "from .m import f" imports m
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (the first one repeated at the end), or None."""
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "rlhf_minimal.model" in graph and "rlhf_minimal.exercises.lab05" in graph
    assert "rlhf_minimal.graphs" in graph["rlhf_minimal.ppo"]  # the parser sees relative imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_model_file_is_only_the_model():
    """model.py imports no other module of the package, and sampling and CUDA graphs live elsewhere."""
    graph = import_graph()
    assert graph["rlhf_minimal.model"] == set()
    from rlhf_minimal import model

    for name in ("generate", "decode_step", "left_pad"):
        assert not hasattr(model, name)


def test_ppo_update_fits_on_one_screen_with_backward_and_step_in_it():
    from rlhf_minimal.ppo import ppo_update

    source = inspect.getsource(ppo_update)
    assert len(source.splitlines()) <= 60
    for piece in ("policy_loss(", "value_loss(", "entropy", "zero_grad", "backward(", "clip_grad_norm(",
                  "precision.step(optimizer)", "for start in range("):
        assert piece in source, piece


def test_every_field_of_a_rollout_has_a_shape_comment():
    from rlhf_minimal import ppo

    source = inspect.getsource(ppo.Rollout)
    for field in ppo.Rollout.__dataclass_fields__:
        line = next(l for l in source.splitlines() if l.strip().startswith(f"{field}:"))
        assert "#" in line and ("[B" in line or "B decoded" in line), line


@pytest.mark.parametrize("scale", ["ci", "cpu", "gpu"])
def test_every_scale_is_one_table_of_valid_presets(scale):
    from rlhf_minimal.dpo import DPOConfig
    from rlhf_minimal.ppo import PPOConfig
    from rlhf_minimal.pretrain import PretrainConfig
    from rlhf_minimal.reward import RewardConfig
    from rlhf_minimal.scale import PRESETS
    from rlhf_minimal.sft import SFTConfig
    from rlhf_minimal.world import WorldConfig

    assert PRESETS[scale].keys() == PRESETS["cpu"].keys()
    for config, stage in ((PretrainConfig, "pretrain"), (SFTConfig, "sft"), (RewardConfig, "reward"),
                          (PPOConfig, "ppo"), (DPOConfig, "dpo")):
        made = config.preset(scale)
        for field, value in PRESETS[scale][stage].items():
            assert getattr(made, field) == value, (stage, field)
    assert WorldConfig.preset(scale, seed=3).seed == 3
    # DPO's evaluation decodes as PPO's does, so the two are compared alike
    dpo, ppo = DPOConfig.preset(scale), PPOConfig.preset(scale)
    assert (dpo.temperature, dpo.max_new_tokens) == (ppo.temperature, ppo.max_new_tokens)
