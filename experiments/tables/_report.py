"""Writing a results table: markdown + csv + metadata, all from one run."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.provenance import command, load_average, provenance, provenance_text

__all__ = ["load_average", "timed"]  # re-exported for the table scripts

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def sampling_table_parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every sampled-oracle table takes: --quick, --samples, --out."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="tiny budget (CI)")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default docs/tables)"
    )
    return parser


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write(
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    started: float,
    notes: str = "",
    out_dir: Path | None = None,
    compute_s: float | None = None,
) -> Path:
    """Writes ``<out_dir>/<name>.md``, ``.csv`` and ``.json`` (metadata); returns the .md path.

    ``compute_s``: the wall time of the runs behind the table when some were reused from
    earlier invocations (their recorded times), so the page never reports a 0 s table.
    """
    out = out_dir or DOCS / "tables"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    meta = provenance(command(), started)
    if compute_s is not None:
        meta["compute_s"] = round(compute_s, 1)
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1))
    reused = (
        ""
        if compute_s is None
        else f" (training runs behind the rows, some reused from earlier invocations of "
        f"the same command: {meta['compute_s']} s in all)"
    )
    md = markdown_table(header, rows) + "\n\n" + provenance_text(meta, reused)
    if notes:
        md += "\n" + notes.strip() + "\n"
    path = out / f"{name}.md"
    path.write_text(md)
    return path


def train_config(
    name: str, workdir: Path, overrides: list[str], reuse: bool = False
) -> tuple[list[dict], float]:
    """Trains ``experiments/configs/<name>.py`` from scratch with the CLI in a subprocess.

    With ``reuse``, a finished run of the same command in ``workdir`` is read instead.
    Returns the run's metrics.jsonl records and its wall time in seconds.
    """
    done = workdir / "table_run.json"
    if reuse and done.exists():
        record = json.loads(done.read_text())
        if record["overrides"] == overrides:
            with open(workdir / "metrics.jsonl") as f:
                return [json.loads(line) for line in f], record["wall_seconds"]
    if workdir.exists():
        shutil.rmtree(workdir)
    cmd = [
        sys.executable,
        "-m",
        "experiments.main",
        f"--config=experiments/configs/{name}.py",
        f"--workdir={workdir}",
        *overrides,
    ]
    print("$", " ".join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.time() - start
    done.write_text(json.dumps({"overrides": overrides, "wall_seconds": wall}))
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    return records, wall


def timed(fn: Callable[..., Any], *args: Any, repeats: int = 1) -> tuple[Any, float]:
    """(output as numpy, wall seconds) of ``jax.jit(fn)(*args)`` compiled ahead of time:
    the fastest of ``repeats`` runs (the same output each time for fixed inputs), the one
    least disturbed by other jobs on a shared machine."""
    compiled = jax.jit(fn).lower(*args).compile()
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - start)
    return jax.tree.map(np.asarray, out), best
