"""The training tables' --quick modes run end to end (tiny models, a few steps each).

All of them are in the slow tier (several trainings each); the default tier checks the
tables' readings against their numbers.
"""

import pytest
from test_tables import _run

LIKELIHOOD = (
    "experiments.tables.likelihood",
    "likelihood",
    "--rows=shakespeare_ar,shakespeare_mdlm,shakespeare_d3pm_uniform",
)
# Every table's --quick run is in the slow tier (each trains several models: 30-100 s on
# 2 cores); the default tier tests the tables' readings below and trains through the
# same experiments code in tests/test_cli.py and tests/test_training.py.
SLOW_QUICK = [
    ("experiments.tables.digits", "digits", "--rows=digits_d3pm_gauss,digits_mdlm"),
    LIKELIHOOD,
    ("experiments.tables.sampling_quality", "sampling_quality", None),
    ("experiments.tables.guidance_digits", "guidance_digits", None),
    ("experiments.tables.block_sizes", "block_sizes", "--rows=4"),
    ("experiments.tables.block_decoding", "block_decoding", None),
]


@pytest.mark.slow  # several trainings each: kept out of the 15-minute default run
@pytest.mark.parametrize("module, table, rows", SLOW_QUICK, ids=[q[1] for q in SLOW_QUICK])
def test_training_table_quick_slow_tier(tmp_path, module, table, rows):
    _check_quick(tmp_path, module, table, rows)


def _check_quick(tmp_path, module: str, table: str, rows: str | None) -> None:
    out = _run(module, tmp_path, f"--runs={tmp_path / 'runs'}", *([rows] if rows else []))
    text = (out / f"{table}.md").read_text()
    assert "Command:" in text and "|---|" in text
    assert (out / f"{table}.csv").read_text().count("\n") >= 2  # header and a row


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, table", [LIKELIHOOD[:2], SLOW_QUICK[0][:2]], ids=["likelihood", "digits"]
)
def test_training_table_quick_every_row(tmp_path, module, table):
    out = _run(module, tmp_path, f"--runs={tmp_path / 'runs'}")
    assert "Command:" in (out / f"{table}.md").read_text()


def test_block_decoding_rows_and_reading_follow_the_numbers():
    """The decoding table's settings per block model and its generated reading (pure
    functions: no training)."""
    from experiments.tables import block_decoding

    rows = block_decoding.decoders(4, [16, 8, 4, 2, 1], [0.9, 0.5])
    assert rows[0] == {"inner": "first_hitting", "steps": None, "threshold": None}
    assert [r["steps"] for r in rows[1:4]] == [4, 2, 1]  # steps above the block dropped
    assert rows[4:] == [
        {"inner": "confidence", "steps": 4, "threshold": c} for c in (0.9, 0.5)
    ]  # threshold mode: the cap (one call per position) never binds

    def cell(inner, steps, threshold, calls, bits, se):
        return {"model": "BD3-LM block 4", "inner": inner, "steps": steps,
                "threshold": threshold, "calls": calls, "bits": bits, "se": se,
                "entropy": 2.5, "words": 0.5}  # fmt: skip

    text = block_decoding.reading(
        [
            {**cell("-", "-", None, "-", 2.0, 0.01), "model": "validation text"},
            cell("first_hitting", "-", None, 1.0, 2.50, 0.01),
            cell("confidence", 2, None, 0.5, 2.51, 0.01),
            cell("confidence", 1, None, 0.25, 2.90, 0.01),
            cell("confidence", 4, 0.9, 0.6, 2.30, 0.01),
        ]
    )
    assert "first_hitting (the model's law, 1.00 calls/token): 2.500 bits/char" in text
    assert "2 steps/block: 0.500 calls/token, 2.510 bits/char (+0.010, a tie" in text
    assert "1 steps/block: 0.250 calls/token, 2.900 bits/char (+0.400, higher" in text
    assert "threshold 0.9: 0.600 calls/token, 2.300 bits/char (-0.200, lower" in text
    assert "validation text" not in text
