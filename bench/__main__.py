"""`python -m bench [name ...]`: run the benchmarks and print one table of figures."""

from __future__ import annotations

import importlib
import sys

from rich.console import Console
from rich.table import Table

from bench.common import Figure

# Each module exposes run() -> list[Figure].
ALL = [
    "startup",
    "seeding",
    "limiter",
    "replies",
    "attribution",
    "selection",
    "averages",
    "pipeline",
    "gemini",
    "webhook",
]


def main(argv: list[str]) -> None:
    names = argv or ALL
    figures: list[Figure] = []
    # Piped into a file or a log, the table keeps its notes on one line instead of 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 220)
    for name in names:
        with console.status(f"bench {name}"):
            module = importlib.import_module(f"bench.{name}")
            results = module.run()
        for figure in results:
            console.print(f"[green]✓[/green] {figure.name}: {figure.value:.3g} {figure.unit}")
        figures.extend(results)
    table = Table(title="reactivation benchmarks")
    for column in ("measure", "figure", "seed's approach", "note"):
        table.add_column(column)
    for f in figures:
        baseline = f"{f.baseline:.3g} {f.unit} {f.baseline_label}".strip() if f.baseline is not None else "-"
        table.add_row(f.name, f"{f.value:.3g} {f.unit}", baseline, f.note)
    console.print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
