"""A config that does not match a run, and damaged checkpoints, on a run the trainer wrote.

A shape-changing config is an error before anything is touched (every mode); a key
that may change on resume resumes; a damaged step is moved aside with one clean line
and the previous one is used; a mismatched template is never taken for corruption.
"""

import gc
import hashlib
import os
import shutil
import subprocess
import sys
import warnings

import pytest

from ddjax import training
from experiments import model, run
from experiments.run_config import (
    RESUMABLE,
    ConfigMismatchError,
    fixed_differences,
    is_resumable,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config():
    """The smoke MDLM at 1 x 16, 4 steps with checkpoints at 2 and 4."""
    from experiments.configs import smoke

    c = smoke.get_config()
    c.model.update(num_layers=1, width=16, num_heads=2)
    c.train.update(num_steps=4, checkpoint_every=2, log_every=2, max_to_keep=2, final_eval=False)
    c.train.tensorboard = False
    c.sample.num_samples = 0
    return c


def snapshot(workdir):
    """Every file under ``workdir`` with its SHA-256 (the checkpoints byte for byte)."""
    out = {}
    for root, _, files in os.walk(workdir):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, workdir)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir written by ``run(cfg, workdir, 'train')``: checkpoints 2 and 4."""
    work = str(tmp_path_factory.mktemp("run") / "w")
    out = run.run(tiny_config(), work, "train")
    assert out["step"] == 4
    assert model.saved_steps(work) == [2, 4]
    return work


@pytest.fixture
def workdir(trained, tmp_path):
    """A private copy of the trained run."""
    dst = str(tmp_path / "w")
    shutil.copytree(trained, dst)
    return dst


# -- the config check -----------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, key, value, saved",
    [
        ("train", "model.width", 32, 16),
        ("eval", "model.num_layers", 2, 1),
        ("sample", "model.width", 64, 16),
        ("train", "optim.weight_decay", 0.1, 0.0),
    ],
)
def test_a_config_that_changes_the_state_is_an_error_that_touches_nothing(
    trained, mode, key, value, saved
):
    before = snapshot(trained)
    cfg = tiny_config()
    section, name = key.split(".")
    cfg[section][name] = value
    cfg.sample.num_samples = 2  # sample.* may change; --mode=sample needs samples
    with pytest.raises(ConfigMismatchError) as e:
        run.run(cfg, trained, mode)
    assert f"{key}: saved={saved!r} given={value!r}" in str(e.value)
    assert e.value.differences == {key: (saved, value)}
    assert snapshot(trained) == before  # no step moved, written or started again
    assert model.saved_steps(trained) == [2, 4]


def test_the_mismatch_is_one_message_on_the_command_line(trained):
    before = snapshot(trained)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/smoke.py",
            f"--workdir={trained}",
            "--mode=eval",
        ],  # the smoke config is 2 x 32; the run is 1 x 16
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("error: the config does not match the run in")
    assert "model.width: saved=16 given=32" in out.stderr
    assert "model.num_layers: saved=1 given=2" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) < 8
    assert snapshot(trained) == before


def test_resumable_keys_and_the_compared_ones():
    for key in ("train.num_steps", "train.eval_every", "sample.steps", "sample.options.eta"):
        assert is_resumable(key), key
    for key in ("model.width", "model.num_layers", "optim.lr", "data.seq_len", "seed"):
        assert not is_resumable(key), key
    saved = {"model": {"width": 16, "channel_mults": [1, 2]}, "train": {"num_steps": 4}}
    given = {"model": {"width": 16, "channel_mults": [1, 4]}, "train": {"num_steps": 9}}
    assert fixed_differences(saved, given) == {"model.channel_mults": ([1, 2], [1, 4])}
    assert "train.num_steps" in RESUMABLE


def test_a_resumable_change_resumes(workdir, capsys):
    cfg = tiny_config()
    cfg.train.update(num_steps=6, eval_every=6, log_every=1)
    cfg.eval.during_train_batches = 1
    cfg.sample.steps = 4
    out = run.run(cfg, workdir, "train")
    assert out["step"] == 6
    text = capsys.readouterr().out
    assert "resumed from" in text and "at step 4" in text
    assert model.saved_steps(workdir) == [4, 6]


# -- damaged checkpoints and mismatched templates -------------------------------------


def _damage(workdir, step, how):
    """Truncates (or overwrites the middle of) every array file of ``step``."""
    d = os.path.join(workdir, "checkpoints", str(step), "state", "ocdbt.process_0", "d")
    for f in os.listdir(d):
        p = os.path.join(d, f)
        n = os.path.getsize(p)
        with open(p, "r+b") as fh:
            if how == "truncated":
                fh.truncate(n // 2)
            else:
                fh.seek(n // 3)
                fh.write(b"\x00" * (n // 3))


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_a_damaged_step_is_moved_aside_with_one_clean_line(workdir, capfd, how):
    from experiments.main import show_checkpoint_warnings_as_one_line

    _damage(workdir, 4, how)
    cfg = tiny_config()
    ignored = []  # "Exception ignored in ..." reports (abandoned reads), also later ones
    hook = sys.unraisablehook
    sys.unraisablehook = ignored.append
    try:
        with warnings.catch_warnings():  # the CLI's warning format, undone on exit
            warnings.simplefilter("always")
            show_checkpoint_warnings_as_one_line()
            ev = run.run(cfg, workdir, "eval")
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not ignored, [str(u.exc_value)[:300] for u in ignored]
    assert ev["num_sequences"] > 0
    assert os.path.exists(os.path.join(workdir, "eval_step2.json"))  # the previous step
    ckdir = os.listdir(os.path.join(workdir, "checkpoints"))
    assert "2" in ckdir and "4" not in ckdir
    assert any(f.startswith("corrupt-4-") for f in ckdir)
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if "unreadable" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: checkpoint at step 4 in ")
    assert "moved aside to corrupt-4-" in lines[0] and lines[0].endswith("the previous one")
    noises = ("Task exception was never retrieved", "TensorStore", "Traceback", "Exception ignored")
    for noise in noises:
        assert noise not in err, err[-3000:]
    assert len(err) < 1000, err[-3000:]
    assert "restored step 2" in out


def test_a_mismatched_template_raises_and_moves_nothing(trained):
    before = snapshot(trained)
    cfg = tiny_config()
    cfg.model.width = 32
    state, _ = model.make_state(model.build(cfg))
    ckpt = model.checkpointer(cfg, trained, create=False)
    try:
        with pytest.raises(training.CheckpointMismatchError, match="saved \\(16, 16\\)"):
            ckpt.restore_latest(state)
        with pytest.raises(training.CheckpointMismatchError) as e:
            ckpt.restore(2, state)
        assert ckpt.unreadable == [] and ckpt.all_steps() == [2, 4]
    finally:
        ckpt.close()
    assert any("asked for (32, 32)" in d for d in e.value.differences)
    assert snapshot(trained) == before
