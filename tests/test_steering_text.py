"""The tiny-Shakespeare steering table (experiments/tables/steering_text.py): its --quick
mode trains three tiny models and writes every row; the equal-wall step match."""

import pytest
from test_tables import _run

from experiments.tables import steering_text


def test_wall_line_fits_and_falls_back_to_the_origin():
    a, b = steering_text.wall_line({8: 1.0, 16: 2.0, 64: 8.0})
    assert abs(a) < 1e-9 and abs(b - 0.125) < 1e-9
    a, b = steering_text.wall_line({8: 0.5, 16: 0.9, 64: 3.7})
    assert a > 0 and abs((3.7 - a) / b - 64) < 2
    # noise makes the slope negative: the line through the origin and the longest row
    a, b = steering_text.wall_line({2: 0.06, 4: 0.03})
    assert a == 0.0 and abs(b - 0.03 / 4) < 1e-12


@pytest.mark.slow  # trains three models: kept out of the 15-minute default run
def test_steering_text_quick(tmp_path):
    out = _run("experiments.tables.steering_text", tmp_path, f"--runs={tmp_path / 'runs'}")
    text = (out / "steering_text.md").read_text()
    for name in (
        "validation text",
        "edlm (AR log_joint)",
        "ancestral (wall of edlm",
        "ancestral (unsteered)",
        "smc, twist r(argmax x0)",
        "smc, no twist",
        "svdd, svdd_value",
        "Command:",
        "Reading",
    ):
        assert name in text, name
    csv = (out / "steering_text.csv").read_text().splitlines()
    assert (
        csv[0].startswith("part,sampler,steps") and len(csv) == 1 + 11
    )  # part A: 7 rows, part B: 4
