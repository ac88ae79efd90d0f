"""Two processes for real: jax.distributed on 127.0.0.1 with CPU (gloo) collectives.

The main job (``python -m experiments.main``) runs the smoke config in two local
processes of one CPU device each, and in one process with two virtual CPU devices.
The same global batch is split over the same two devices either way, and the
computation is the same XLA program partitioned the same way, so parameters,
evaluation and samples agree bitwise; checkpoints move between the two layouts in both
directions.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARGS = [
    "--config=experiments/configs/smoke.py",
    "--config.train.checkpoint_every=10",
    "--config.train.max_to_keep=5",
    "--config.train.async_checkpoint=False",
    "--config.eval.max_batches=2",
    "--config.sample.steps=8",
    # the cosine schedule depends on train.num_steps, which the resumed runs change
    "--config.optim.decay=constant",
]
TIMEOUT = 300


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    # conftest's fast-compile flag, plus the device count a test asks for
    flags = os.environ.get("XLA_FLAGS", "") + " " + extra.pop("XLA_FLAGS", "")
    env["XLA_FLAGS"] = flags.strip()
    env.update(extra)
    return env


def launch(nproc, workdir, *args):
    """Runs the main job in ``nproc`` processes (1: two virtual devices); returns the
    output of process 0 (stdout + stderr), after checking every process exited 0."""
    cmd = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", *ARGS, *args]
    if nproc == 1:
        envs = [_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")]
    else:
        port = _free_port()
        envs = [
            _env(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES=str(nproc),
                JAX_PROCESS_ID=str(i),
            )
            for i in range(nproc)
        ]
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for e in envs
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"process {i} of {nproc}:\n{out[-4000:]}"
    return outs[0]


def params_at(workdir, step):
    """Every leaf of the saved TrainState as numpy arrays (whatever devices saved it)."""
    import jax
    import orbax.checkpoint as ocp

    path = os.path.join(workdir, "checkpoints", str(step), "state")
    ckptr = ocp.PyTreeCheckpointer()
    tree = ckptr.metadata(path).item_metadata
    tree = getattr(tree, "tree", tree)
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return [np.asarray(x) for x in jax.tree.leaves(ckptr.restore(path, restore_args=args))]


def final_eval(workdir):
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r for r in records if "eval/nelbo_bits_per_char" in r][-1]


def assert_same_state(a, b, step):
    pa, pb = params_at(a, step), params_at(b, step)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_two_processes_match_one_process_on_two_devices_and_checkpoints_move(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    out2 = launch(2, two, "--config.train.num_steps=10")
    assert "2 device(s)" in out2 and "step 10/10 | loss" in out2
    out1 = launch(1, one, "--config.train.num_steps=10")
    assert "2 device(s)" in out1

    # parameters, optimiser state and EMA after 10 steps: bitwise equal
    assert_same_state(two, one, 10)
    # evaluation: every row once (the same sequences, the same mean and count)
    e2, e1 = final_eval(two), final_eval(one)
    assert e2["eval/nelbo_bits_per_char"] == e1["eval/nelbo_bits_per_char"]
    count = [line for line in out1.splitlines() if "validation bits per char" in line]
    assert count and count[0].split(" over ")[-1] in out2  # "128 sequences"
    # sampling: each process drew its share of the rows; together the one-process draw
    assert (two / "samples_step10.txt").read_text() == (one / "samples_step10.txt").read_text()

    # checkpoints: two processes -> one process -> two processes, against one process
    quick = ["--config.train.final_eval=False", "--config.sample.num_samples=0"]
    moved = tmp_path / "moved"
    shutil.copytree(two, moved)
    out = launch(1, moved, "--config.train.num_steps=20", *quick)
    assert "at step 10" in out
    out = launch(2, moved, "--config.train.num_steps=30", *quick)
    assert "at step 20" in out
    launch(1, one, "--config.train.num_steps=30", *quick)
    assert_same_state(moved, one, 30)
    steps = [json.loads(line)["step"] for line in open(moved / "metrics.jsonl")]
    assert steps == sorted(steps) and len([s for s in steps if s == 30]) == 1


def test_sampling_splits_the_rows_over_processes(tmp_path):
    """In-process check of the row split on two virtual devices (the two-process test
    above checks that the split draw equals the one-device draw)."""
    script = (
        "import jax, numpy as np\n"
        "from experiments import generation, model\n"
        "from experiments.configs import smoke\n"
        "cfg = smoke.get_config(); cfg.sample.steps = 4\n"
        "exp = model.build(cfg)\n"
        "g = generation.generate_global(exp, exp.params, 4, 0)\n"
        "rows = sorted(s.index[0].start for s in g.addressable_shards)\n"
        "assert [s.data.shape[0] for s in g.addressable_shards] == [2, 2], g.sharding\n"
        "assert rows == [0, 2], rows\n"
        "one = model.build(cfg, mesh=__import__('ddjax').training.make_mesh(jax.devices()[:1]))\n"
        "np.testing.assert_array_equal(np.asarray(g), generation.generate(one, one.params, 4, 0))\n"
        "print('OK')\n"
    )
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr[-3000:]
