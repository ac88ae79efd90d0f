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


def test_exact_toy_quick(tmp_path):
    out = _run("experiments.tables.exact_toy", tmp_path)
    text = (out / "exact_toy.md").read_text()
    assert "first_hitting" in text and "Command:" in text
    assert (out / "exact_toy.csv").exists() and (out / "exact_toy.png").exists()


def test_gumbel_precision_quick(tmp_path):
    out = _run("experiments.tables.gumbel_precision", tmp_path)
    text = (out / "gumbel_precision.md").read_text()
    assert "float32 Gumbel" in text and "tail-exact" in text and "Command:" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, table",
    [
        ("experiments.tables.likelihood", "likelihood"),
        ("experiments.tables.sampling_quality", "sampling_quality"),
        ("experiments.tables.digits", "digits"),
        ("experiments.tables.guidance_digits", "guidance_digits"),
    ],
)
def test_training_tables_quick(tmp_path, module, table):
    out = _run(module, tmp_path, f"--runs={tmp_path / 'runs'}")
    assert "Command:" in (out / f"{table}.md").read_text()
