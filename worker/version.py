"""The installed package's version, which every command prints for `--version`."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "wisphub-bqn-sync"


def package_version() -> str:
    """The version pip installed, or a note when the code runs from an uninstalled copy."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "(not installed)"


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """`--version`: print `<command> <version>` and exit 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
