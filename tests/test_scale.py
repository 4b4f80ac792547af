import subprocess
import sys

import pytest
import torch

from rlhf_minimal import scale


def test_explicit_scale_wins(monkeypatch):
    monkeypatch.setenv(scale.ENV_VAR, "gpu")
    assert scale.current_scale("ci") == "ci"


def test_env_var_is_read(monkeypatch):
    monkeypatch.setenv(scale.ENV_VAR, "ci")
    assert scale.current_scale() == "ci"


def test_default_is_the_measured_cpu_scale_with_or_without_cuda(monkeypatch):
    monkeypatch.delenv(scale.ENV_VAR, raising=False)
    for available in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert scale.current_scale() == "cpu"


def test_unknown_scale_lists_valid_ones(monkeypatch):
    monkeypatch.setenv(scale.ENV_VAR, "huge")
    with pytest.raises(scale.ScaleError) as err:
        scale.current_scale()
    message = str(err.value)
    assert "'huge'" in message and "ci, cpu, gpu" in message and "RLHF_SCALE" in message


def test_command_line_check_fails_on_unknown_scale():
    env = {"RLHF_SCALE": "huge", "PATH": ""}
    done = subprocess.run([sys.executable, "-m", "rlhf_minimal.scale"], env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "unknown scale 'huge'" in done.stdout
