"""benchmarks/device_check.sh: the GPU check's steps, tried on the CPU path."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "device_check.sh")


def _run(mode, out, timeout=600):
    env = dict(os.environ, DEVICE_CHECK_MODE=mode, OUT=str(out), PYTHON=sys.executable)
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        ["bash", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_dry_mode_prints_every_step(tmp_path):
    out = _run("dry", tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert 'pip install -q -e ".[gpu,test]"' in text
    assert "pytest -q -p no:cacheprovider -n 0 -x tests/test_mixed_precision.py" in text
    assert "benchmarks/train.py --config experiments/configs/text8_mdlm.py" in text
    assert "--set model.dtype=bfloat16 --seconds 120" in text and "--peak_tflops auto" in text
    assert (
        "benchmarks/samplers.py --vocab 50258 --steps 16 "
        "--samplers ancestral,euler,tweedie,theta_trapezoidal" in text
    )
    assert "benchmarks/blocks.py --length 1024 --blocks 4,16" in text
    assert "benchmarks/steering.py --vocab 50258 --n 4,8" in text
    assert _run("nope", tmp_path).returncode == 2


def test_peak_lookup_by_device_kind(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "_bench_train", os.path.join(ROOT, "benchmarks", "train.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Dev:
        device_kind = "NVIDIA H200"

    monkeypatch.setattr(mod.jax, "devices", lambda: [Dev()])
    assert mod.peak_tflops("auto") == 989.0
    Dev.device_kind = "NVIDIA H100 PCIe"
    assert mod.peak_tflops("auto") == 756.0
    Dev.device_kind = "cpu"
    assert mod.peak_tflops("auto") == 0.0
    assert mod.peak_tflops("12.5") == 12.5


@pytest.mark.slow
def test_cpu_mode_runs_every_step(tmp_path):
    out = _run("cpu", tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[device_check] OK in" in out.stdout
    result = json.load(open(tmp_path / "train.json"))
    assert result["sustained_steps"] > 0 and result["sustained_tokens_per_s"] > 0
    assert "sustained_mfu" in result
    assert (tmp_path / "samplers.md").exists()
    assert (tmp_path / "blocks.md").exists() and (tmp_path / "steering.md").exists()
