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

    out = cli(
        "--config=experiments/configs/smoke.py",
        f"--workdir={work}",
        "--mode=sample",
        "--config.sample.num_samples=3",
        "--config.sample.seed=7",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert open(work / f"samples_step{steps}.txt").read().count("--- sample") == 3


CONFIGS = sorted(
    f[:-3]
    for f in os.listdir(os.path.join(ROOT, "experiments", "configs"))
    if f.endswith(".py") and f not in ("__init__.py", "base.py")
)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads_and_defines_only_known_keys(name):
    """Each config file builds a ConfigDict whose keys are exactly the base config's."""
    import importlib

    from experiments.configs import base
    from experiments.main import config_keys

    cfg = importlib.import_module(f"experiments.configs.{name}").get_config()
    assert sorted(config_keys(cfg)) == sorted(config_keys(base.get_base_config()))
    if cfg.model.name != "unet":
        assert cfg.data.seq_len <= cfg.model.max_len
    assert (cfg.loss.name == "ar") == (cfg.process.name == "none")


SMALL = [c for c in CONFIGS if c.startswith(("shakespeare_", "digits_"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL)
def test_every_small_config_trains_evaluates_and_samples(tmp_path, name):
    out = cli(
        f"--config=experiments/configs/{name}.py",
        f"--workdir={tmp_path}",
        "--config.train.num_steps=3",
        "--config.eval.max_batches=1",
        "--config.eval.batch_size=8",
        "--config.sample.steps=8",
        "--config.sample.num_samples=2",
        "--config.model.num_layers=1",
        "--config.model.width=32",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validation bits per" in out.stdout
    assert any(f.startswith("samples_step3") for f in os.listdir(tmp_path))
