"""Command-line argument types with their ranges, and usage errors in one line like every other
error of `vaeedof`."""

from __future__ import annotations

import argparse
import math

from .fusion.options import TILE_MULTIPLE


class Parser(argparse.ArgumentParser):
    """Usage mistakes in one line, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return value


def tile_side(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() else 0
    if value < 1 or value % TILE_MULTIPLE:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive multiple of {TILE_MULTIPLE}")
    return value


def finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
    return value
