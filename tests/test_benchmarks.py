"""The benchmark scripts run end to end and record their output (``--record``)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402


def test_to_markdown_keeps_tables_and_fences_the_rest():
    out = _record.to_markdown("jax 0.1\n\n| a | b |\n|---|---|\n| 1 | 2 |\nratio = x\n")
    assert out == "```\njax 0.1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nratio = x\n```"


def test_sampler_benchmark_records_its_table(tmp_path):
    record = tmp_path / "samplers.md"
    cmd = [
        sys.executable, "benchmarks/samplers.py", "--vocab", "28", "--samplers", "ancestral",
        "--steps", "4", "--batch", "2", "--length", "16", "--repeats", "1",
        "--record", str(record),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = record.read_text()
    assert text.startswith("Command: `python benchmarks/samplers.py --vocab 28")
    assert "Machine: " in text and "commit " in text
    rows = [line for line in text.splitlines() if line.startswith("| masking | 28 |")]
    assert [r.split(" | ")[2] for r in rows] == ["ancestral"]
    cells = rows[0].split(" | ")
    assert float(cells[7]) > 0 and float(cells[9]) > 0  # ratio to the net loop, own / net
    # the printed output went to stdout as well
    assert "ratio=" in proc.stdout


@pytest.mark.slow  # ~6 compiled programs: ~40 s on an idle 2-core machine
def test_blocks_benchmark_records_its_table(tmp_path):
    record = tmp_path / "blocks.md"
    cmd = [
        sys.executable, "benchmarks/blocks.py", "--length", "32", "--batch", "1",
        "--layers", "1", "--width", "32", "--heads", "2", "--full-calls", "2", "--tokens", "16",
        "--thresholds", "0.9", "--repeats", "1", "--record", str(record),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = record.read_text()
    assert text.startswith("Command: `python benchmarks/blocks.py --length 32")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines()}
    for name in ("(a) full first_hitting", "(b) block 4 + cache", "(c) AR + cache"):
        assert float(rows[name][2]) > 0  # ms per token
    assert rows["(b) block 16 + cache"][1] == "32"  # one call per token
    assert "KV cache (block 16): 8,192 bytes" in text  # 2 x 1 x 1 x 32 x 32 x 4
    assert "| threshold 0.9 |" in text


@pytest.mark.slow  # a benchmark end to end: kept out of the 15-minute default run
def test_steering_benchmark_records_its_ratios(tmp_path):
    record = tmp_path / "steering.md"
    cmd = [sys.executable, "benchmarks/steering.py", "--quick", "--record", str(record)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = record.read_text()
    assert text.startswith("Command: `python benchmarks/steering.py --quick")
    rows = [line for line in text.splitlines() if line.startswith("| 28 |")]
    assert [r.split(" | ")[1] for r in rows] == ["smc", "svdd"]
    assert all(float(r.split(" | ")[6]) > 0 for r in rows)  # the ratio column
