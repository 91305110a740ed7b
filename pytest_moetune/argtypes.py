"""Turn ``ValueError``-raising parsers into argparse ``type=`` converters.

argparse (and so pytest's option parser) reports an ``ArgumentTypeError`` as a usage error that names
the option and carries our message, which names the bad value.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def argparse_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type=``: its ``ValueError`` becomes ``ArgumentTypeError``."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def non_negative_int(text: str) -> int:
    """An int >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def user_path(text: str) -> Path:
    """A path whose leading ``~`` is the home folder, as the plugin's path options read it (a shell
    leaves ``--cache=~/tuning.json`` as it is)."""
    return Path(text).expanduser()
