"""The ``sanspi`` command line: one subcommand per job.

Each subcommand lives with the code it drives and registers itself through a
``register(subparsers)`` function; this module only collects them, so the
CLI never grows a second copy of any job's logic.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Each subcommand's home; the module registers its parser.
SUBCOMMANDS = (
    "sanspi.spec.cli",
    "sanspi.proof.cli",
    "sanspi.lab.cli",
    "sanspi.conform.cli",
    "sanspi.bench.cli",
    "sanspi.attack.cli",
    "sanspi.nic.cli",
)


def progress(msg: str) -> None:
    """A progress line on a terminal's stderr, overwritten by the next one."""
    if sys.stderr.isatty():
        print(f"\r\033[K  {msg}", end="", file=sys.stderr, flush=True)


def clear_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


class UsageError(Exception):
    """Bad input at the command line: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="sanspi",
        description="Reference oracle for the WSD SAN SPI memory and RDMA extensions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(f"sanspi {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sanspi {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
