"""The results scripts' --quick modes run end to end and write their tables."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", module, "--quick", f"--out={out}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow  # 20+ s; the exact-toy reading is checked by default (below)
def test_exact_toy_quick(tmp_path):
    out = _run("experiments.tables.exact_toy", tmp_path)
    text = (out / "exact_toy.md").read_text()
    assert "first_hitting" in text and "Command:" in text
    assert (out / "exact_toy.csv").exists() and (out / "exact_toy.png").exists()


@pytest.mark.slow  # a results script end to end: kept out of the 15-minute default run
def test_posterior_oracle_quick(tmp_path):
    out = _run("experiments.tables.posterior_oracle", tmp_path)
    text = (out / "posterior_oracle.md").read_text()
    for name in ("split_gibbs", "aps", "ddpd", "pc_sampler", "Command:"):
        assert name in text
    assert (out / "posterior_oracle.csv").exists()


@pytest.mark.slow  # 15-25 s
def test_gumbel_precision_quick(tmp_path):
    out = _run("experiments.tables.gumbel_precision", tmp_path)
    text = (out / "gumbel_precision.md").read_text()
    assert "float32 Gumbel" in text and "tail-exact" in text and "Command:" in text


def test_likelihood_reading_follows_the_numbers():
    from experiments.tables import likelihood

    bpc = {"shakespeare_ar": 2.0, "shakespeare_mdlm": 3.0, "shakespeare_d3pm_absorb": 3.01}
    bpc["shakespeare_udlm"] = 2.5
    se = dict.fromkeys(bpc, 0.02)
    text = likelihood.reading(bpc, se)
    assert "AR < masking: agrees" in text
    assert "masking < D3PM absorbing: a tie" in text  # 0.01 apart, 2 s.e. = 0.057
    assert "D3PM absorbing < uniform: does not hold" in text
    assert "masking < uniform: does not hold" in text
    assert "ar 2.000 < udlm 2.500 < mdlm 3.000" in text


def test_exact_toy_reading_flags_a_biased_first_hitting():
    from experiments.tables import exact_toy

    rows = [["first_hitting", "masking", "3:0.0050", "1e-5", "nan", "nan"]]
    law_rows = [["weak", "euler", "masking", "2e-2, 1e-2", 1.0, 2.0]]
    text = exact_toy.reading(rows, law_rows, floor=0.002)
    assert "first_hitting: TV 0.0050" in text and "NOT exact" in text
    assert "euler: exact-law TV order weak/masking 1.0 (expected 1)" in text
    assert "exact, as expected" in exact_toy.reading(rows, law_rows, floor=0.004)


@pytest.mark.slow  # a results script end to end: kept out of the 15-minute default run
def test_steering_oracle_quick(tmp_path):
    out = _run("experiments.tables.steering_oracle", tmp_path)
    text = (out / "steering_oracle.md").read_text()
    assert "smc, exact twist" in text and "svdd, exact value" in text and "Command:" in text
    assert "edlm, exact log p" in text and "ancestral (exact law)" in text
