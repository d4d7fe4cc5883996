"""Command line: `poserenet train|boost|eval|metrics|table|complexity|predict|export|demo|data`,
one module per group of commands; each module adds its own subcommands to the parser."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import ConfigError, PoseDataError, WriteError
from . import data, demo, evaluate, predict, train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poserenet", description="Top-down 2D human pose estimation with the PoseReNet plug-in.")
    p.add_argument("--version", action="version", version=f"poserenet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for commands in (demo, train, evaluate, predict, data):
        commands.add_commands(sub)
    return p


def _one_line(e: Exception) -> str:
    """The message itself, also for an error re-raised from a DataLoader worker (whose text
    carries the worker's traceback)."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith(("poserenet.", "FileNotFoundError")) else last
    # Values quoted from a user's file may hold line breaks or control characters: one line, always.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PoseDataError, ConfigError, WriteError, FloatingPointError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named: missing, unreadable, a folder, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
