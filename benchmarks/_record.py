"""``--record FILE``: a benchmark's printed output, with the command, machine, commit and
wall time that made it, as a markdown file (``docs/benchmarks/*.md``, assembled into
docs/benchmarks.md by ``python -m experiments.tables.results_page``)."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import provenance  # noqa: E402


class _Tee:
    def __init__(self, stream) -> None:
        self.stream, self.lines = stream, []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def to_markdown(output: str) -> str:
    """Runs of lines starting with '|' stay markdown tables; the rest goes in code blocks."""
    blocks: list[tuple[bool, list[str]]] = []
    for line in output.rstrip("\n").split("\n"):
        is_table = line.startswith("|")
        if not blocks or blocks[-1][0] != is_table:
            blocks.append((is_table, []))
        blocks[-1][1].append(line)
    parts = []
    for is_table, lines in blocks:
        text = "\n".join(lines).strip("\n")
        if text:
            parts.append(text if is_table else f"```\n{text}\n```")
    return "\n\n".join(parts)


@contextlib.contextmanager
def recorded(path: str | None) -> Iterator[None]:
    """Tees stdout inside the block; with a path, writes it there as markdown at the end."""
    if not path:
        yield
        return
    started, tee, stdout = time.time(), _Tee(sys.stdout), sys.stdout
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = stdout
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    command = shlex.join(["python", script, *sys.argv[1:]])
    text = (
        provenance.provenance_text(provenance.provenance(command, started))
        + "\n"
        + to_markdown("".join(tee.lines))
        + "\n"
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
