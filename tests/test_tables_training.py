"""The training tables' --quick modes run end to end (tiny models, a few steps each).

The default run trains a subset of rows that covers each kind of bound (exact AR NLL,
continuous-time NELBO, the D3PM bound); the slow tier runs every row.
"""

import pytest
from test_tables import _run

QUICK = [
    ("experiments.tables.digits", "digits", "--rows=digits_d3pm_gauss,digits_mdlm"),
    # slow tier (test_training_table_quick_slow_tier): the likelihood, sampling-quality,
    # guidance and block-size tables: 60-100 s each on 2 cores, over the 15-minute budget
]
LIKELIHOOD = (
    "experiments.tables.likelihood",
    "likelihood",
    "--rows=shakespeare_ar,shakespeare_mdlm,shakespeare_d3pm_uniform",
)
SLOW_QUICK = [
    LIKELIHOOD,
    ("experiments.tables.sampling_quality", "sampling_quality", None),
    ("experiments.tables.guidance_digits", "guidance_digits", None),
    ("experiments.tables.block_sizes", "block_sizes", "--rows=4"),
]


@pytest.mark.parametrize("module, table, rows", QUICK, ids=[q[1] for q in QUICK])
def test_training_table_quick(tmp_path, module, table, rows):
    _check_quick(tmp_path, module, table, rows)


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
    "module, table", [LIKELIHOOD[:2], QUICK[0][:2]], ids=["likelihood", "digits"]
)
def test_training_table_quick_every_row(tmp_path, module, table):
    out = _run(module, tmp_path, f"--runs={tmp_path / 'runs'}")
    assert "Command:" in (out / f"{table}.md").read_text()
