"""examples/accelerate_reward.py under `accelerate launch` with two CPU processes: TRL's
RewardTrainer, data parallel, on our SFT model and comparisons."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(os.sys.executable).parent / "accelerate").exists(),
                    reason="accelerate is not installed")
def test_reward_trainer_runs_data_parallel_on_two_cpu_processes(tmp_path):
    launcher = Path(os.sys.executable).parent / "accelerate"
    out = tmp_path / "run.json"
    env = {**os.environ, "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([str(launcher if launcher.exists() else "accelerate"), "launch", "--multi_gpu",
                          "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                          "--dynamo_backend", "no", str(ROOT / "examples" / "accelerate_reward.py"),
                          "--scale", "ci", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world_size"] == 2 and report["device"] == "cpu"
    # each process took half of every batch: half the steps of one process over the same pairs
    assert report["steps"] == -(-report["n_pairs"] // (2 * 16))
    assert report["train_accuracy"] > 0.6
