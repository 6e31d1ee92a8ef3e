"""``mmreason <subcommand>``: generate, train, eval, anticipate, ls, validate, demo.

Every subcommand parses its arguments and calls one function of :mod:`mmreason.api`; errors that a user can
fix (a wrong config key, a missing file) are printed as one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from mmreason.cli import assets, commands

# each module lists its subcommands in SUBCOMMANDS; `mmreason --help` shows them in this order
COMMAND_MODULES = (assets, commands)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        result = args.func(args)
    except commands.USER_ERRORS as e:
        print(f"mmreason {args.command}: error: {e}", file=sys.stderr)
        return 2
    if result is None:
        return 0
    if isinstance(result, int):
        return result
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # python -m mmreason.cli.main (what `accelerate launch -m` runs)
    sys.exit(main())
