"""``mmreason <subcommand>``: generate, demo, train, eval, runs, anticipate, extract, convert, import, ls, validate.

Every subcommand parses its arguments and calls one function of :mod:`mmreason.api`; errors that a user can
fix (a wrong config key, a missing file) are printed as one line and exit with status 2.

Output: the package's log lines (progress notes, evaluation lines, warnings) go to stderr, info from the main
process and warnings from every process; a subcommand's result (a dict) is printed as JSON on stdout, once, by
the main process. Ctrl-C ends any subcommand with one line on stderr and status 130; a subcommand that saved its
partial work says where by raising ``KeyboardInterrupt(message)`` (the trainer's ``TrainingInterrupted`` does).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from mmreason.cli import assets, commands, extract, released

# each module lists its subcommands in SUBCOMMANDS; `mmreason --help` shows them in this order
COMMAND_MODULES = (assets, commands, extract, released)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmreason", description="LLM/VLM-centric video understanding: assets, training, evaluation, anticipation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        for register in module.SUBCOMMANDS:
            register(sub)
    return parser


def _version() -> str:
    from mmreason import __version__

    return __version__


def process_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process as the launcher (torchrun / accelerate launch) exported them."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (tests swap it per test)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Formatter(logging.Formatter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prefix}{level}{record.getMessage()}"


def configure_logging() -> None:
    """Log lines of the ``mmreason`` loggers to stderr: info on the main process, warnings from all processes."""
    rank, world = process_rank()
    logger = logging.getLogger("mmreason")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(f"mmreason[{rank}]: " if world > 1 else "mmreason: "))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def _error_text(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # KeyError's str() adds quotes


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    configure_logging()
    rank, world = process_rank()
    try:
        result = args.func(args)
    except KeyboardInterrupt as e:  # Ctrl-C: one line, no traceback
        if rank == 0:
            print(f"mmreason {args.command}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except commands.USER_ERRORS as e:
        where = f" (process {rank})" if world > 1 else ""
        print(f"mmreason {args.command}: error{where}: {_error_text(e)}", file=sys.stderr)
        return 2
    if result is None:
        return 0
    if isinstance(result, int):
        return result
    if rank == 0:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # python -m mmreason.cli.main (what `accelerate launch -m` runs)
    sys.exit(main())
