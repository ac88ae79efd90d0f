"""Assembles docs/results.md from the tables the other scripts wrote in docs/tables/.

Nothing in the page is typed by hand: each section is a table file with the command,
machine and wall time that made it. A table that has not been run yet is listed as
missing with the command that makes it.

    python -m experiments.tables.results_page
"""

from __future__ import annotations

from experiments.tables import _report

SECTIONS = [
    (
        "likelihood",
        "Likelihood on tiny Shakespeare (text8 alphabet)",
        "python -m experiments.tables.likelihood",
    ),
    (
        "sampling_quality",
        "Sampling quality against network calls",
        "python -m experiments.tables.sampling_quality",
    ),
    (
        "exact_toy",
        "Exact toy table: samplers against the oracle",
        "python -m experiments.tables.exact_toy",
    ),
    ("digits", "Digits: bits per pixel", "python -m experiments.tables.digits"),
    (
        "guidance_digits",
        "Guidance on class-conditional digits",
        "python -m experiments.tables.guidance_digits",
    ),
]


def main() -> None:
    tables = _report.DOCS / "tables"
    parts = [
        "# Results\n",
        "Every table below was written by the script named under it (`experiments/tables/`), "
        "with the command, machine and wall time of that run; regenerate this page with "
        "`python -m experiments.tables.results_page`. "
        "Benchmarks: [benchmarks.md](benchmarks.md).\n",
    ]
    for name, title, cmd in SECTIONS:
        parts.append(f"## {title}\n")
        md = tables / f"{name}.md"
        if not md.exists():
            parts.append(f"Not run yet. Command: `{cmd}`\n")
            continue
        # table files link their images relative to docs/tables/
        body = md.read_text().replace("](", "](tables/").replace("](tables/http", "](http")
        parts.append(body)
        png = tables / f"{name}.png"
        if png.exists():
            parts.append(f"![{name}](tables/{name}.png)\n")
    out = _report.DOCS / "results.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
