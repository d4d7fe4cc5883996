"""What the commands share: --set overrides and the printed tables."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config

TABLE_COLUMNS = ["run", "AP", "AP50", "AP75", "APM", "APL", "AR", "PCK@0.2"]


def add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=10 (repeatable)")


def print_pckh(rows: list[dict[str, Any]]) -> None:
    """The MPII table (paper, Table III), when the rows have PCKh."""
    from ..metrics import MPII_GROUPS

    cols = [*MPII_GROUPS, "Mean", "Mean@0.1"]
    rows = [{"run": r["run"], **{c: r[f"PCKh {c}"] for c in cols}} for r in rows if "PCKh Mean" in r]
    if rows:
        print("\nPCKh@0.5 (Mean@0.1: PCKh@0.1)")
        print(format_table(rows, ["run", *cols]))


def print_table(rows: list[dict[str, Any]], cfg: Config) -> None:

    pck_key = f"PCK@{cfg.eval.pck_threshold:g}"
    cols = [c if c != "PCK@0.2" else pck_key for c in TABLE_COLUMNS]
    print(format_table(rows, cols))


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table; floats in [0, 1] are printed as percentages."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{100 * v:.1f}" if -1 <= v <= 1 else f"{v:.2f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)])
