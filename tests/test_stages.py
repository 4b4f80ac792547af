"""Pretraining and SFT: the masked loss, bad input, reproducibility, the cache and checkpoints."""
import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlhf_minimal import cache
from rlhf_minimal.data import DataError, demonstrations_dataset, load, prompts_dataset, save
from rlhf_minimal.model import GPT, GPTConfig
from rlhf_minimal.pretrain import PretrainConfig, pretrain
from rlhf_minimal.sft import SFTConfig, encode_demonstrations, sft_loss, train_sft
from rlhf_minimal.train import TrainingDiverged, check_finite
from rlhf_minimal.world import demonstrations

TINY = PretrainConfig(n_layer=1, n_head=2, d_model=32, steps=30, eval_every=15, window=32, warmup=5)


def test_sft_targets_mask_the_prompt(tokenizer):
    rows = [{"prompt": "what does the\n", "completion": "the ."}]
    inputs, targets = encode_demonstrations(tokenizer, rows, 16)
    prompt = tokenizer.encode(rows[0]["prompt"])
    completion = tokenizer.encode(rows[0]["completion"], add_eos=True)
    assert inputs[0, :len(prompt) + len(completion) - 1].tolist() == (prompt + completion)[:-1]
    assert targets[0].tolist()[:len(prompt) - 1] == [-100] * (len(prompt) - 1)
    assert targets[0, len(prompt) - 1:len(prompt) - 1 + len(completion)].tolist() == completion


def test_masked_sft_loss_equals_hand_computation(tokenizer):
    rows = [{"prompt": "what does the\n", "completion": "the ."},
            {"prompt": "the\n", "completion": "what does the ."}]
    inputs, targets = encode_demonstrations(tokenizer, rows, 16)
    torch.manual_seed(0)
    logits = torch.randn(*inputs.shape, tokenizer.vocab_size)
    terms = []
    for row in rows_and_positions(tokenizer, rows):
        b, t, token = row
        terms.append(-F.log_softmax(logits[b, t], -1)[token])
    assert torch.allclose(sft_loss(logits, targets), torch.stack(terms).mean())


def rows_and_positions(tokenizer, rows):
    """Independent bookkeeping: (row, position, target) for every response token and EOS."""
    out = []
    for b, row in enumerate(rows):
        prompt = tokenizer.encode(row["prompt"])
        completion = tokenizer.encode(row["completion"], add_eos=True)
        for j, token in enumerate(completion):
            out.append((b, len(prompt) - 1 + j, token))
    return out


def test_bad_rows_are_named(tokenizer):
    with pytest.raises(DataError, match="row 1: 'completion' is empty"):
        encode_demonstrations(tokenizer, [{"prompt": "the\n", "completion": "the ."},
                                          {"prompt": "the\n", "completion": ""}], 16)
    with pytest.raises(DataError, match="no column 'completion'"):
        encode_demonstrations(tokenizer, [{"prompt": "the\n", "response": "x"}], 16)
    with pytest.raises(DataError, match="row 0: prompt .* longer than the context"):
        encode_demonstrations(tokenizer, [{"prompt": "the " * 20 + "\n", "completion": "the ."}], 16)


def test_datasets_round_trip(ci_world, tmp_path):
    demos = demonstrations_dataset(ci_world)
    assert {"prompt", "completion"} <= set(demos.column_names)
    save(demos, tmp_path / "demos")
    assert load(tmp_path / "demos")[:5] == demos[:5]
    prompts = prompts_dataset(ci_world, "rl")
    assert prompts.column_names[0] == "prompt" and len(prompts) == len(ci_world.splits["rl"])
    with pytest.raises(DataError, match="unknown split"):
        prompts_dataset(ci_world, "test")


def test_nan_loss_stops_training():
    with pytest.raises(TrainingDiverged, match="step 7"):
        check_finite(torch.tensor(float("nan")), "SFT", 7)


def test_pretraining_is_reproducible_and_learns(ci_world, tokenizer):
    _, log_a = pretrain(ci_world, tokenizer, TINY, seed=0, device="cpu")
    _, log_b = pretrain(ci_world, tokenizer, TINY, seed=0, device="cpu")
    assert log_a["train_loss"] == log_b["train_loss"]
    import math
    assert log_a["val_loss"][-1] < log_a["val_loss"][0] < math.log(tokenizer.vocab_size)
    assert log_a["val_loss"][-1] < math.log(tokenizer.vocab_size) - 1.0  # well below chance


def test_sft_is_reproducible_and_lowers_the_loss(ci_world, tokenizer):
    base, _ = pretrain(ci_world, tokenizer, TINY, seed=0, device="cpu")
    rows = demonstrations(ci_world)[:120]
    cfg = SFTConfig(epochs=2, batch_size=16)
    _, log_a = train_sft(base, tokenizer, ci_world, rows, cfg, seed=0, device="cpu")
    _, log_b = train_sft(base, tokenizer, ci_world, rows, cfg, seed=0, device="cpu")
    assert log_a["train_loss"] == log_b["train_loss"] and log_a["val_loss"] == log_b["val_loss"]
    assert log_a["val_loss"][-1] < log_a["val_loss"][0]


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    model = GPT(GPTConfig(20, 1, 2, 16, 8))
    cache.save_checkpoint(tmp_path / "ck", model, {"stage": {"seed": 0}}, log={"a": 1})
    assert not list((tmp_path / "ck").glob("*.pt")) and not list((tmp_path / "ck").glob("*.bin"))
    again = cache.load_checkpoint(tmp_path / "ck", {"stage": {"seed": 0}})
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(cache.CheckpointMismatch, match="seed: checkpoint has 0, expected 1"):
        cache.load_checkpoint(tmp_path / "ck", {"stage": {"seed": 1}})
    with pytest.raises(FileNotFoundError):
        cache.load_checkpoint(tmp_path / "nothing")


def _build_slowly(folder):
    import time
    from pathlib import Path
    time.sleep(0.5)
    counter = Path(folder).parent / "builds.txt"
    with open(counter, "a") as f:
        f.write("built\n")
    (Path(folder) / "payload.json").write_text(json.dumps({"ok": True}))


def _worker(root):
    import os
    os.environ["RLHF_CACHE"] = root
    from rlhf_minimal import cache as c
    c.cached("demo", {"x": 1}, _build_slowly)


def test_cache_builds_once_under_concurrency(cache_dir):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(cache_dir),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert (cache_dir / "builds.txt").read_text().count("built") == 1
    entry = cache.cached("demo", {"x": 1}, _build_slowly)
    assert json.loads((entry / "payload.json").read_text()) == {"ok": True}
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".demo")]  # no temp folders left


def test_a_crashed_build_leaves_no_entry(cache_dir):
    def crash(folder):
        (folder / "half.json").write_text("{")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        cache.cached("demo", {"x": 2}, crash)
    assert not any(p.name.startswith("demo-") and p.is_dir() for p in cache_dir.iterdir())
    assert cache.cached("demo", {"x": 2}, _build_slowly).exists()


def test_cache_key_depends_on_config():
    assert cache.entry_key("sft", {"a": 1}) != cache.entry_key("sft", {"a": 2})
    assert cache.entry_key("sft", {"a": 1}) == cache.entry_key("sft", {"a": 1})


def test_cache_key_depends_on_a_forced_precision():
    keys = {cache.entry_key("sft", {"a": 1}, precision) for precision in ("", "fp16", "bf16")}
    assert len(keys) == 3


@pytest.mark.parametrize("stage", sorted(cache.STAGE_MODULES))
def test_changing_any_module_a_stage_imports_changes_its_key(stage, monkeypatch):
    """The key hashes every module the stage's module imports, directly or not (the graphs of the
    training steps and the sampling code included), and no module it does not import."""
    modules = cache.imported_modules(cache.STAGE_MODULES[stage])
    assert {"model", "train", cache.STAGE_MODULES[stage]} <= set(modules)
    if stage != "base":
        assert {"sampling", "evaluate", "graphs"} <= set(modules)
    before = cache.entry_key(stage, {"a": 1})
    real_read = Path.read_bytes
    for name in cache.import_graph():
        def edited(path, name=name):
            data = real_read(path)
            return data + b"\n# edited\n" if path.name == f"{name}.py" else data
        monkeypatch.setattr(Path, "read_bytes", edited)
        changed = cache.entry_key(stage, {"a": 1}) != before
        assert changed == (name in modules), f"{stage}: editing {name}.py"
    monkeypatch.setattr(Path, "read_bytes", real_read)
    assert cache.entry_key(stage, {"a": 1}) == before
