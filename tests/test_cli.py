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
        "--config.train.eval_every=10",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert f"step {steps}/{steps} | loss" in text and "steps/s" in text and "left" in text
    assert "validation bits per char:" in out.stdout
    assert "real words: " in out.stdout and "(validation text: " in out.stdout
    records = [json.loads(line) for line in open(work / "metrics.jsonl")]
    assert records[0]["step"] == 10 and "train/loss" in records[0]
    assert any("eval/nelbo_bits_per_char" in r for r in records)
    assert [r["step"] for r in records if "eval/nelbo_bits_per_char" in r] == [10, 20]
    assert (work / "samples_step10.txt").exists()  # samples refreshed at each evaluation
    assert os.listdir(work / "tensorboard")  # tensorboardX is in install_requires
    assert (work / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"files in {work}" in text and "loss curve:" in text
    # progress from the first steps: the first (compiling) step, then early lines
    assert "step 1/20 | loss" in text and "(compiling)" in text and "step 5/20 |" in text
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
    # a new file: the samples written at the end of training stay
    assert open(work / f"samples_step{steps}.txt").read().count("--- sample") == 2
    new = work / f"samples_step{steps}_ancestral_seed7.txt"
    assert new.read_text().count("--- sample") == 3 and str(new) in out.stdout

    out = cli(  # a sampler option from the command line
        "--config=experiments/configs/smoke.py",
        f"--workdir={work}",
        "--mode=sample",
        "--config.sample.sampler=remdm",
        "--config.sample.options.eta=0.02",
        "--config.sample.options.schedule=loop",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "samples (remdm, written to" in out.stdout


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


# -- sample.options: any sampler option from the config, checked before training -----------


def _smoke(sampler="ancestral", **options):
    from experiments.configs import smoke

    cfg = smoke.get_config()
    cfg.sample.sampler = sampler
    cfg.sample.options.update(options)
    return cfg


@pytest.fixture(scope="module")
def smoke_exp():
    from experiments import model

    return model.build(_smoke())


def _with_sample(exp, **sample):
    from experiments import model

    cfg = exp.cfg.copy_and_resolve_references()
    options = sample.pop("options", {})
    cfg.sample.update(sample)
    cfg.sample.options.update(options)
    return model.Experiment(
        cfg, exp.data, exp.objective, exp.graphdef, exp.params, exp.apply_fn, exp.mesh
    )


def test_sample_options_reach_the_sampler(smoke_exp, monkeypatch):
    import functools

    import ddjax as dd
    from experiments import generation

    real = dd.samplers.SAMPLERS["remdm"]
    seen = {}

    @functools.wraps(real)  # keeps the signature that the option check reads
    def recording(key, denoiser, process, shape, **kwargs):
        seen.update(kwargs)
        return real(key, denoiser, process, shape, **kwargs)

    monkeypatch.setitem(dd.samplers.SAMPLERS, "remdm", recording)
    exp = _with_sample(smoke_exp, sampler="remdm", options={"eta": 0.02, "t_on": 0.6})
    samples = generation.generate(exp, exp.params, 2, seed=0)
    assert samples.shape == (2, exp.data.seq_len)
    assert seen == {"steps": 16, "eta": 0.02, "t_on": 0.6}


def test_remdm_eta_changes_the_samples(smoke_exp):
    """The option is not just accepted: remasking (eta > 0) moves the draw."""
    import numpy as np

    from experiments import generation

    def draw(eta):
        exp = _with_sample(smoke_exp, sampler="remdm", options={"eta": eta})
        return generation.generate(exp, exp.params, 4, seed=3)

    assert not np.array_equal(draw(0.0), draw(0.5))


def test_sample_options_are_checked_against_the_signature():
    import inspect

    import ddjax as dd
    from experiments import sample_config
    from experiments.common import ConfigError

    assert sample_config.sampler_options(_smoke("remdm", eta=0.02)) == {"eta": 0.02}
    assert sample_config.sampler_options(_smoke("theta_trapezoidal", theta=0.3, multi_jump=True))
    assert sample_config.sampler_options(_smoke("predictor_corrector", n_corrector=2))
    assert sample_config.sampler_options(_smoke("first_hitting", tokens_per_call=2))

    job = {"key", "denoiser", "process", "shape", "steps", "temperature", "fixed"}
    job.add("return_trajectory")
    params = inspect.signature(dd.samplers.SAMPLERS["remdm"]).parameters
    valid = [p for p in params if p not in job]
    with pytest.raises(ConfigError) as e:
        sample_config.sampler_options(_smoke("remdm", etaa=0.02))
    msg = str(e.value)
    assert "sample.options.etaa is unknown for sampler 'remdm'" in msg
    assert msg.endswith("valid options: " + ", ".join(valid))
    with pytest.raises(ConfigError, match="theta is unknown for sampler 'euler'"):
        sample_config.sampler_options(_smoke("euler", theta=0.5))
    # what the job sets itself is not an option: its config key is named instead
    with pytest.raises(ConfigError, match=r"steps is set by the job \(sample.steps\)"):
        sample_config.sampler_options(_smoke("remdm", steps=3))
    with pytest.raises(ConfigError, match="temperature is set by the job"):
        sample_config.sampler_options(_smoke("remdm", temperature=0.5))
    with pytest.raises(ConfigError) as e:
        sample_config.sampler_options(_smoke("remdmm"))
    assert str(e.value) == f"unknown sample.sampler 'remdmm'; known: {sorted(dd.samplers.SAMPLERS)}"


def test_sample_options_on_the_command_line():
    from experiments.main import check_overrides, split_sample_options

    argv = [
        "x",
        "--config=experiments/configs/smoke.py",
        "--config.sample.options.eta=0.02",
        "--config.sample.options.schedule",
        "loop",
        "--config.sample.options.multi_jump=True",
        "--config.sample.options.theta=(0.5)",
        "--config.train.num_steps=3",
    ]
    assert check_overrides(argv) is None  # any option name passes here, checked later
    rest, options = split_sample_options(argv)
    assert rest == ["x", "--config=experiments/configs/smoke.py", "--config.train.num_steps=3"]
    assert options == {"eta": 0.02, "schedule": "loop", "multi_jump": True, "theta": 0.5}
    with pytest.raises(ValueError, match="one keyword"):
        split_sample_options(["x", "--config.sample.options.a.b=1"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--config.sample.sampler=nope"], "unknown sample.sampler 'nope'; known: ['"),
        (
            ["--config.sample.sampler=remdm", "--config.sample.options.etaa=0.1"],
            "sample.options.etaa is unknown for sampler 'remdm'; valid options: ",
        ),
    ],
    ids=["sampler", "option"],
)
def test_bad_sampler_or_option_fails_before_step_0(tmp_path, args, expected):
    out = cli("--config=experiments/configs/smoke.py", f"--workdir={tmp_path / 'w'}", *args)
    assert out.returncode != 0
    assert expected in out.stderr and "Traceback" not in out.stderr
    assert "step " not in out.stdout + out.stderr
    assert not (tmp_path / "w").exists()  # nothing written, nothing trained


# -- errors: clear, printed once, before anything is written ----------------------------------


def _corpus(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    "case",
    ["non_utf8", "short_corpus", "loss_name", "file_without_path", "template_char", "mode"],
)
def test_config_errors_are_one_clear_line_and_exit_nonzero(tmp_path, case):
    if case == "non_utf8":
        path = _corpus(tmp_path, "latin1.txt", "caf\u00e9 ".encode("latin-1") * 5000)
        args = ["--config.data.name=file", f"--config.data.path={path}"]
        expected = f"{path} is not UTF-8 text"
    elif case == "short_corpus":
        path = _corpus(tmp_path, "short.txt", b"to be or not to be " * 10)
        args = ["--config.data.name=file", f"--config.data.path={path}"]
        expected = "is too short for data.seq_len=32"
    elif case == "loss_name":
        args, expected = ["--config.loss.name=mased_elbo"], "unknown loss.name 'mased_elbo'; valid:"
    elif case == "file_without_path":
        args = ["--config.data.name=file"]
        expected = "data.name='file' needs data.path: pass --config.data.path=PATH"
    elif case == "template_char":
        args = ["--config.data.mode=raw", "--config.sample.template=to be~ or ___"]
        expected = "sample.template character '~' (position 5) is not in the alphabet"
    else:
        args, expected = ["--config.data.mode=bytes"], "unknown data.mode 'bytes'; valid:"
    work = tmp_path / "w"
    out = cli("--config=experiments/configs/smoke.py", f"--workdir={work}", *args)
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr[-2000:]
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
    assert not work.exists()  # nothing written, nothing trained


def test_sample_on_an_empty_workdir_is_a_clear_error_that_creates_nothing(tmp_path):
    work = tmp_path / "empty"
    out = cli("--config=experiments/configs/smoke.py", f"--workdir={work}", "--mode=sample")
    assert out.returncode != 0
    assert f"error: no checkpoint in {work / 'checkpoints'}; train first" in out.stderr
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
    assert not work.exists()


def test_a_missing_workdir_is_one_line():
    out = cli("--config=experiments/configs/smoke.py")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: missing --workdir=DIR (where checkpoints, metrics, plots and samples go)"
    )


def test_help_works_without_config_and_lists_the_config_keys():
    out = cli("--help")
    assert out.returncode == 0, out.stderr
    for key in ("data.path", "data.name", "model.width", "train.num_steps", "sample.sampler"):
        assert f"  {key} " in out.stdout
    assert "--workdir" in out.stdout and "--mode" in out.stdout
    resuming = out.stdout.split("resuming:", 1)[1]  # the keys that may change on resume
    for key in ("train.num_steps", "train.eval_every", "sample.", "eval."):
        assert key in resuming


def test_check_config_names_the_key_in_process():
    from experiments.checks import check_config
    from experiments.common import ConfigError
    from experiments.configs import smoke

    check_config(smoke.get_config())
    for key, value, expected in [
        ("sample.sampler", "nope", "unknown sample.sampler 'nope'"),
        ("model.dtype", "fp8", "unknown model.dtype 'fp8'"),
        ("process.schedule", "cosin", "unknown process.schedule 'cosin'"),
        ("train.batch_size", 0, "train.batch_size must be > 0"),
        ("data.seq_len", 64, "data.seq_len=64 is longer than model.max_len=32"),
        ("sample.guidance", "cfg", "sample.guidance='cfg' needs a class-conditional model"),
    ]:
        cfg = smoke.get_config()
        section, name = key.split(".")
        cfg[section][name] = value
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
            check_config(cfg)


def test_resume_with_other_data_settings_is_a_clear_error(tmp_path):
    work = tmp_path / "w"
    base = ["--config=experiments/configs/smoke.py", f"--workdir={work}"]
    quick = ["--config.train.num_steps=2", "--config.train.final_eval=False"]
    out = cli(*base, *quick, "--config.sample.num_samples=0")
    assert out.returncode == 0, out.stderr[-3000:]
    out = cli(*base, "--config.train.num_steps=4", "--config.train.batch_size=8")
    assert out.returncode != 0
    assert "error: the config does not match the run in" in out.stderr
    assert "train.batch_size: saved=16 given=8" in out.stderr
    assert "train.num_steps" not in out.stderr  # a key that may change on resume
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr


# -- block diffusion, EOS and threshold decoding from the config (sample.*) -------------------


def test_block_sampling_keys_are_checked_before_step_0():
    from experiments.checks import check_config
    from experiments.common import ConfigError
    from experiments.configs import shakespeare_ar, shakespeare_udlm, smoke
    from experiments.main import check_overrides

    cfg = "--config=experiments/configs/smoke.py"
    keys = ["--config.sample.block_size=4", "--config.sample.eos_id=0"]
    assert check_overrides(["x", cfg, *keys, "--config.sample.threshold=0.9"]) is None
    for sample, expected in [
        ({"block_size": 5}, "sample.block_size=5 must divide data.seq_len=32"),
        ({"block_size": -1}, "sample.block_size must be an integer >= 0"),
        ({"threshold": 0.9}, "sample.threshold (threshold decoding) needs sample.sampler="),
        ({"threshold": 1.5, "sampler": "confidence"}, "sample.threshold must be a number in"),
        ({"eos_id": -2}, "sample.eos_id must be an integer >= -1"),
    ]:
        c = smoke.get_config()
        c.sample.update(sample)
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            check_config(c)
    c = shakespeare_ar.get_config()
    c.sample.eos_id = 0
    check_config(c)  # the AR sampler stops at EOS itself
    c = shakespeare_udlm.get_config()
    c.sample.eos_id = 0
    with pytest.raises(ConfigError, match="sample.eos_id \\(block diffusion\\) needs process"):
        check_config(c)


def test_trim_after_eos_keeps_one_eos_and_drops_the_pads():
    import numpy as np

    from experiments.outputs import trim_after_eos

    rows = np.array([[1, 2, 0, 0, 0], [1, 2, 3, 4, 1], [0, 0, 0, 0, 0], [2, 0, 1, 0, 0]])
    got = [r.tolist() for r in trim_after_eos(rows, 0)]
    assert got == [[1, 2, 0], [1, 2, 3, 4, 1], [0], [2, 0, 1, 0]]
    assert [r.tolist() for r in trim_after_eos(rows, None)] == rows.tolist()


def test_block_sampling_from_the_config(smoke_exp):
    """sample.block_size / eos_id / threshold reach block_diffusion (uncached: the smoke
    MDLM is bidirectional); a BD3-LM config samples with the KV cache."""
    import numpy as np

    from experiments import generation, model, outputs, sample_config
    from experiments.configs import base

    exp = _with_sample(smoke_exp, block_size=8, eos_id=0, steps=4)
    x = np.asarray(generation.generate(exp, exp.params, 3, seed=0))
    assert x.shape == (3, 32)
    texts = outputs.sample_texts(exp, x)
    for row, text in zip(x, texts):  # everything after the first EOS (0) is the pad
        hits = np.flatnonzero(row == 0)
        if len(hits):
            assert (row[hits[0] :] == 0).all()
        # the text ends at that EOS: the pads are not shown
        n = hits[0] + 1 if len(hits) else 32
        assert text == exp.data.decode(row[None, :n])[0]
    exp = _with_sample(smoke_exp, block_size=8, sampler="confidence", threshold=0.5, steps=8)
    assert generation.generate(exp, exp.params, 2, seed=0).shape == (2, 32)

    cfg = base.bd3lm(_smoke(), block_size=4)
    bd3 = model.build(cfg)
    assert sample_config.sample_block_size(cfg) == 4
    x = np.asarray(generation.generate(bd3, bd3.params, 2, seed=0))
    assert x.shape == (2, 32) and (x < bd3.data.vocab_size).all()


def test_ar_experiment_stops_at_eos():
    """sample.eos_id reaches the AR sampler: after each row's first drawn EOS only pads
    (the EOS id), and the text ends at that EOS."""
    import numpy as np

    from experiments import generation, model, outputs
    from experiments.configs import base

    cfg = base.ar(_smoke())
    cfg.model.update(num_layers=1, width=32)
    cfg.sample.eos_id = 0
    exp = model.build(cfg)
    x = np.asarray(generation.generate(exp, exp.params, 8, seed=0))
    assert x.shape == (8, 32)
    stopped = 0
    for row, text in zip(x, outputs.sample_texts(exp, x)):
        hits = np.flatnonzero(row == 0)
        n = hits[0] + 1 if len(hits) else 32
        stopped += n < 32
        assert (row[n:] == 0).all() and text == exp.data.decode(row[None, :n])[0]
    assert stopped  # the random network draws EOS (1 of the smoke alphabet) in 32 tokens


# -- unusable inputs: one line naming the input, no traceback ---------------------------------


def _cli_in_process(monkeypatch, capsys, *args):
    """Runs ``experiments.main.cli`` in this process with ``args``; (exit code, stderr)."""
    from experiments import main

    monkeypatch.setattr(sys, "argv", ["experiments.main", *args])
    with pytest.raises(SystemExit) as e:
        main.cli()
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("experiments/configs/default.py:foo", "get_config() in experiments/configs/default.py "),
        ("experiments/configs/__init__.py", "defines no get_config()"),
        ("README.md", "not a Python config file"),
    ],
    ids=["arg", "not_a_config", "not_python"],
)
def test_a_bad_config_file_is_one_line_naming_it(monkeypatch, capsys, tmp_path, spec, expected):
    code, err = _cli_in_process(monkeypatch, capsys, f"--config={spec}", f"--workdir={tmp_path}")
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: --config={spec}: ") and expected in err
    assert err.count("\n") == 1


def test_an_unusable_workdir_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    from experiments.common import ConfigError
    from experiments.configs import smoke
    from experiments.train import write_config

    afile = tmp_path / "afile"
    afile.write_text("")
    work = f"{afile}/w"
    code, err = _cli_in_process(
        monkeypatch, capsys, "--config=experiments/configs/smoke.py", f"--workdir={work}"
    )
    assert code == 2 and "Traceback" not in err
    assert err == f"error: --workdir={work}: {afile} is a file, not a directory\n"
    # a folder that makedirs cannot create (here: under /proc) passes the check that
    # creates nothing; the first write names it
    if sys.platform.startswith("linux") and os.path.isdir("/proc"):
        with pytest.raises(ConfigError, match=r"^--workdir=/proc/ddjax-x: cannot create directory"):
            write_config(smoke.get_config(), "/proc/ddjax-x")


# -- a trained run from Python (experiments.load_run) and --mode=sample's seed -----------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-step BD3-LM (the default config's kind) trained in process at
    ``ROOT/runs/default``, ROOT a temporary folder: (ROOT, its config)."""
    from experiments import run
    from experiments.configs import base, smoke

    root = tmp_path_factory.mktemp("trained")
    cfg = base.bd3lm(smoke.get_config(), block_size=4)
    cfg.train.update(num_steps=2, checkpoint_every=2, final_eval=False, async_checkpoint=False)
    cfg.model.update(num_layers=1, width=16)
    cfg.sample.update(num_samples=2, steps=4)
    run.run(cfg, str(root / "runs" / "default"), "train")
    return root, cfg


def _readme_snippet(heading):
    """The first ```python block after ``heading`` in README.md."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    rest = text[text.index(heading) :]
    start = rest.index("```python\n") + len("```python\n")
    return rest[start : rest.index("```", start)]


def test_the_readme_example_samples_a_trained_run_from_python(trained_run, monkeypatch, capsys):
    """`import experiments` works (installed, not only in the checkout) and load_run
    restores the run the README way."""
    import ast

    import jax.numpy as jnp

    root, cfg = trained_run
    code = _readme_snippet("### Sampling a trained run from Python")
    assert "experiments.load_run(" in code
    monkeypatch.chdir(root)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    texts = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(texts) == 4 and all(len(t) == cfg.data.seq_len for t in texts)
    run = scope["run"]
    assert run.step == 2 and run.block_size == 4 and run.vocab_size == run.process.vocab_size
    import jax

    # the trained (EMA) parameters, not the fresh ones the model was built with
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), run.model[1], run.experiment.params)
    assert any(jax.tree.leaves(moved))
    x = jnp.zeros((2, run.seq_len), jnp.int32)
    log_probs = run.denoiser(x, jnp.full((2,), 0.5))  # the denoiser contract
    assert log_probs.shape == (2, run.seq_len, run.vocab_size)
    assert jnp.allclose(jnp.exp(log_probs).sum(-1), 1.0, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="config.json"):
        __import__("experiments").load_run(str(root / "nothing"))


def test_sample_mode_does_not_repeat_the_training_samples(trained_run, capsys):
    """With the training seed --mode=sample used to write the training run's samples
    again, byte for byte; now it moves to a fresh seed and says so (and again on a
    rerun, which used to repeat the first --mode=sample file)."""
    from experiments import sampling

    root, cfg = trained_run
    work = root / "runs" / "default"
    train_text = (work / "samples_step2.txt").read_text()
    capsys.readouterr()
    sampling.sample(cfg, str(work))
    out = capsys.readouterr().out
    first = work / "samples_step2_ancestral_seed3.txt"
    assert "note: sampling with seed 3, not sample.seed=2 (the training run drew" in out
    assert first.read_text().count("--- sample") == 2 and first.read_text() != train_text
    sampling.sample(cfg, str(work))
    second = work / "samples_step2_ancestral_seed4.txt"
    assert "note: sampling with seed 4, not sample.seed=2" in capsys.readouterr().out
    assert second.read_text() not in (train_text, first.read_text())


def test_sample_and_eval_paths_reject_a_model_that_outputs_nan(smoke_exp):
    """The CLI's sample and eval paths check what the samplers and the loss return: NaN
    parameters are a NonFiniteError naming the problem, not all-zero samples."""
    import jax
    import numpy as np

    from ddjax import training
    from experiments import evaluation, generation

    bad = jax.tree.map(lambda p: np.full_like(p, np.nan), smoke_exp.params)
    with pytest.raises(training.NonFiniteError, match="invalid id -1"):
        generation.generate(smoke_exp, bad, 2, seed=0)
    with pytest.raises(training.NonFiniteError, match="not finite"):
        evaluation.evaluate_nelbo(smoke_exp, bad, max_batches=1)
    good = generation.generate(smoke_exp, smoke_exp.params, 2, seed=0)
    assert good.min() >= 0 and good.max() < smoke_exp.objective.process.vocab_size
