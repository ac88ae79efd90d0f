"""ddjax.metrics.generative_perplexity's rules, judge features, MAUVE's lazy import, and
the owt_genppl table's --quick mode."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddjax
from ddjax import metrics

pytest.importorskip("safetensors")

from ddjax import interop  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
V = 7


def _bigram_table() -> np.ndarray:
    return np.asarray(jax.random.normal(jax.random.key(0), (V, V)))


def _judge(x: jax.Array) -> jax.Array:
    """A bigram judge: the logits at i depend on token i only (GPT-2's convention)."""
    return jnp.asarray(_bigram_table())[x]


def _nll(prev: int, nxt: int) -> float:
    row = _bigram_table()[prev]
    return float(np.logaddexp.reduce(row) - row[nxt])


def test_rules_first_eos_and_chunks() -> None:
    x = np.array([[1, 2, 3, 0, 4, 5], [2, 2, 2, 2, 2, 2]])
    res = metrics.generative_perplexity(x, _judge, eos_id=0, context_length=4, batch_size=1)
    # row 0 ends at its first EOS (scored): tokens 1 2 3 0, one chunk, 3 scored
    nll0 = _nll(1, 2) + _nll(2, 3) + _nll(3, 0)
    # row 1 has no EOS: chunks [2 2 2 2] [2 2], 3 + 1 scored
    nll1 = 4 * _nll(2, 2)
    np.testing.assert_allclose(res.nats, [nll0, nll1], rtol=1e-5)
    np.testing.assert_array_equal(res.num_tokens, [3, 4])
    np.testing.assert_allclose(res.perplexity, np.exp((nll0 + nll1) / 7), rtol=1e-5)
    ent0 = np.log(4.0)
    np.testing.assert_allclose(res.entropy, (ent0 + 0.0) / 2, rtol=1e-6)


def test_rules_bos_scores_every_token() -> None:
    x = np.array([[1, 2, 3, 4, 5]])
    res = metrics.generative_perplexity(x, _judge, bos_id=6, context_length=3)
    # chunks of 2 tokens after the BOS: [6 1 2] [6 3 4] [6 5]
    want = _nll(6, 1) + _nll(1, 2) + _nll(6, 3) + _nll(3, 4) + _nll(6, 5)
    np.testing.assert_allclose(res.nats, [want], rtol=1e-5)
    assert res.num_tokens[0] == 5


def test_batch_size_does_not_matter() -> None:
    x = np.asarray(jax.random.randint(jax.random.key(1), (5, 9), 0, V))
    a = metrics.generative_perplexity(x, _judge, eos_id=3, context_length=4, batch_size=1)
    b = metrics.generative_perplexity(x, _judge, eos_id=3, context_length=4, batch_size=8)
    np.testing.assert_allclose(a.nats, b.nats, rtol=1e-6)
    assert a.perplexity == pytest.approx(b.perplexity, rel=1e-6)


def test_retokenisation() -> None:
    # samples over letters 'a'..'c' (ids 0..2); the judge's ids are 4..6 for the same text
    decode = lambda ids: "".join("abc"[i] for i in ids)  # noqa: E731
    encode = lambda text: [4 + "abc".index(c) for c in text]  # noqa: E731
    x = np.array([[0, 1, 2, 2]])
    res = metrics.generative_perplexity(x, _judge, decode=decode, encode=encode, context_length=8)
    direct = metrics.generative_perplexity(np.array([[4, 5, 6, 6]]), _judge, context_length=8)
    np.testing.assert_allclose(res.nats, direct.nats)
    texts = metrics.generative_perplexity(["abcc"], _judge, encode=encode, context_length=8)
    np.testing.assert_allclose(texts.nats, direct.nats)
    with pytest.raises(ValueError, match="decode"):
        metrics.generative_perplexity(x, _judge, encode=encode, context_length=8)


def test_gpt2_judge_matches_reference_logits() -> None:
    judge = interop.load_gpt2(FIXTURES / "gpt2_tiny")
    io = np.load(FIXTURES / "gpt2_tiny" / "io.npz")
    x, logits = io["x"], io["logits"].astype(np.float64)
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    nll = -np.take_along_axis(logp[:, :-1], x[:, 1:, None], -1)[..., 0].sum(-1)
    res = metrics.generative_perplexity(x, judge, batch_size=2)  # context: the judge's 32
    np.testing.assert_allclose(res.nats, nll, rtol=1e-5)
    with pytest.raises(ValueError, match="vocabulary"):
        metrics.generative_perplexity(x + 60, judge)


def test_judge_features() -> None:
    judge = interop.load_gpt2(FIXTURES / "gpt2_tiny")
    x = np.load(FIXTURES / "gpt2_tiny" / "io.npz")["x"]
    rows = [x[0], x[1, :5], x[2, :9]]
    f = metrics.judge_features(rows, judge, batch_size=2)
    assert f.shape == (3, 32)
    alone = np.asarray(judge.model(jnp.asarray(x[1:2, :5]), return_features=True))[0, -1]
    np.testing.assert_allclose(f[1], alone, atol=1e-5)


def test_mauve_import_error() -> None:
    try:
        import mauve  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="mauve-text"):
            metrics.mauve(np.zeros((4, 2)), np.zeros((4, 2)))
    else:
        pytest.skip("mauve-text is installed")


@pytest.mark.slow  # the script end to end (~20 s); its BD3-LM path stays in the default tier
def test_owt_genppl_quick(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "experiments.tables.owt_genppl", "--quick", f"--out={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "owt_genppl.md").read_text()
    assert "remdm" in text and "ancestral" in text and "Command:" in text
    assert (out / "owt_genppl.csv").exists()


def test_owt_genppl_samples_bd3lm_block_by_block() -> None:
    """A BD3-LM checkpoint is detected from its config and sampled by block_diffusion with
    the KV cache; its samples are what the uncached block sampler draws with the same key."""
    from experiments.tables import owt_genppl

    path = ROOT / "tests" / "fixtures" / "bd3lm_tiny"
    assert owt_genppl.detect_kind(path) == "bd3lm"
    pretrained = interop.load_bd3lm(path)
    x, _ = owt_genppl.sample(pretrained, "ancestral", 2, (3, 16), 1, seed=5)
    den = ddjax.models.block_denoiser(
        pretrained.model, pretrained.process, time_conditioning=False, cache=False
    )
    want = ddjax.samplers.block_diffusion(
        jax.random.key(5), den, pretrained.process, (3, 16), block_size=4, steps=2
    )
    np.testing.assert_array_equal(x, np.asarray(want))


@pytest.mark.slow
def test_owt_genppl_bd3lm_table(tmp_path: pathlib.Path, monkeypatch) -> None:
    """The table's BD3-LM route end to end on the tiny fixture."""
    from experiments.tables import owt_genppl

    path = ROOT / "tests" / "fixtures" / "bd3lm_tiny"
    out = tmp_path / "out"
    argv = ["owt_genppl", "--quick", f"--checkpoint={path}", "--steps=2", f"--out={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    owt_genppl.main()
    text = (out / "owt_genppl.md").read_text()
    assert "block size 4, sampled block by block with the KV cache" in text
    assert "steps per block" in text
