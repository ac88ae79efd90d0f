"""The command line: a smoke run end to end, its outputs, and its error messages."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_unknown_config_key_lists_the_valid_keys(tmp_path):
    out = cli(
        "--config=experiments/configs/smoke.py", f"--workdir={tmp_path}", "--config.model.widht=64"
    )
    assert out.returncode == 2
    assert "unknown config key 'model.widht'" in out.stderr
    assert "model.width" in out.stderr and "train.num_steps" in out.stderr


def test_check_overrides_in_process():
    from experiments.main import check_overrides

    cfg = "--config=experiments/configs/smoke.py"
    assert check_overrides(["x", cfg, "--config.train.num_steps=3"]) is None
    msg = check_overrides(["x", cfg, "--config.trian.num_steps=3"])
    assert "unknown config key 'trian.num_steps'" in msg and "train.num_steps" in msg
    assert "config file not found" in check_overrides(["x", "--config=nope.py"])


def test_missing_data_file_names_the_path_and_how_to_get_it(tmp_path):
    missing = tmp_path / "no" / "text8.zip"
    out = cli(
        "--config=experiments/configs/smoke.py",
        f"--workdir={tmp_path / 'w'}",
        "--config.data.name=text8",
        f"--config.data.path={missing}",
    )
    assert out.returncode != 0
    assert str(missing) in out.stderr
    assert "text8.zip" in out.stderr and "mattmahoney.net" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("steps", [20])
def test_smoke_run_trains_evaluates_samples_and_writes_its_files(tmp_path, steps):
    work = tmp_path / "w"
    out = cli(
        "--config=experiments/configs/smoke.py",
        f"--workdir={work}",
        f"--config.train.num_steps={steps}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert f"step {steps}/{steps} | loss" in text and "steps/s" in text and "left" in text
    assert "validation bits per char:" in out.stdout
    records = [json.loads(line) for line in open(work / "metrics.jsonl")]
    assert records[0]["step"] == 10 and "train/loss" in records[0]
    assert any("eval/nelbo_bits_per_char" in r for r in records)
    assert os.listdir(work / "tensorboard") or "tensorboardX is not installed" in text
    assert sorted(os.listdir(work / "checkpoints")) == ["10", "20"]
    samples = open(work / f"samples_step{steps}.txt").read()
    assert samples.count("--- sample") == 2

    out = cli("--config=experiments/configs/smoke.py", f"--workdir={work}", "--mode=eval")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validation bits per char:" in out.stdout
    assert (work / f"eval_step{steps}.json").exists()
