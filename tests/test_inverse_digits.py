"""The inverse-problem digits table: its likelihoods against their definitions, and its
--quick mode end to end (tiny untrained models)."""

import csv

import jax.numpy as jnp
import numpy as np
import pytest
from test_tables import _run

from experiments.tables import inverse_digits as inv


def _direct(problem: str, m, x: np.ndarray) -> np.ndarray:
    """log p(y | x) written out pixel by pixel from the problem statement (float64)."""
    out = np.zeros(len(x))
    for b, img in enumerate(x.astype(np.float64)):
        if problem == "inpainting":  # top half observed, Gaussian mismatch of sigma 0.5
            y = np.asarray(m.pix_y[b], np.float64)
            out[b] = -sum((img[i] - y[i]) ** 2 for i in range(32)) / (2 * 0.5**2)
        elif problem == "downsampling":  # 2x2-block means, sigma 1
            y = np.asarray(m.down_y[b], np.float64).reshape(4, 4)
            im = img.reshape(8, 8)
            for r in range(4):
                for c in range(4):
                    mean = im[2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean()
                    out[b] -= (mean - y[r, c]) ** 2 / 2
        else:  # each pixel kept w.p. 0.7, else uniform over the 17 levels
            y = np.asarray(m.noisy_y[b])
            out[b] = sum(np.log(0.7 * (img[i] == y[i]) + 0.3 / 17) for i in range(64))
    return out


def test_likelihoods_match_their_definitions_on_every_row_layout():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 17, (3, 64)).astype(np.int32)
    for i, problem in enumerate(inv.PROBLEMS):
        m, picture = inv.measure(problem, truth, seed=i)
        assert picture.shape == (3, 8, 8)
        x = rng.integers(0, 17, (3, 64)).astype(np.int32)
        x[0] = truth[0]  # one row at the truth
        got = np.asarray(inv.log_likelihood(m, jnp.asarray(x)))
        np.testing.assert_allclose(got, _direct(problem, m, x), rtol=1e-5, atol=1e-3)
        # particle layout (smc, svdd): row b * copies + j belongs to measurement b
        xs = rng.integers(0, 17, (3 * 4, 64)).astype(np.int32)
        got = np.asarray(inv.log_likelihood(m, jnp.asarray(xs)))
        want = [_direct(problem, _row(m, r // 4), xs[r : r + 1])[0] for r in range(12)]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    # the noisy observation keeps each pixel with probability 0.7 (+ 0.3 / 17 by chance)
    big = rng.integers(0, 17, (400, 64)).astype(np.int32)
    m, _ = inv.measure("noisy", big, seed=1)
    kept = float((np.asarray(m.noisy_y) == big).mean())
    assert abs(kept - (0.7 + 0.3 / 17)) < 0.01  # 25600 pixels: sd 0.003


def _row(m, b: int):
    """The measurement of row b alone (a one-row Measurement)."""
    return inv.Measurement(*(a[b : b + 1] for a in m))


@pytest.mark.slow  # a results script end to end: kept out of the 15-minute default run
def test_inverse_digits_quick(tmp_path):
    out = _run("experiments.tables.inverse_digits", tmp_path, f"--runs={tmp_path / 'runs'}")
    text = (out / "inverse_digits.md").read_text()
    assert "Command:" in text and "|---|" in text
    with open(out / "inverse_digits.csv") as f:
        rows = list(csv.reader(f))[1:]
    pairs = {(r[0], r[1]) for r in rows}
    for problem in inv.PROBLEMS:
        for method in ("aps", "smc", "svdd", "split_gibbs"):
            assert (method, problem) in pairs
            assert (out / f"inverse_digits_{problem}_{method}.png").exists()
    assert ("fixed", "inpainting") in pairs
    for r in rows:
        assert 0.0 <= float(r[2]) <= 1.0 and 0.0 <= float(r[3]) <= 16.0
