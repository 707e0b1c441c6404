"""Logging to a file and the console, progress bars that go to the log too, and Blender's
C-level console output sent to a log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

LOGGER_NAME = "vaeedof"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(log_file: str | os.PathLike | None = None, verbose: bool = False) -> None:
    """Console at INFO (DEBUG with verbose); the optional log file gets everything."""
    logger = get_logger()
    logger.setLevel(logging.DEBUG)
    logger.handlers.clear()
    logger.propagate = False
    console = _CurrentStderr()
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(console)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


def progress(iterable=None, **kwargs):
    """A tqdm bar on stderr (which Snakemake rules send to their log), disabled off a terminal
    unless VAEEDOF_PROGRESS=1, so logs are not flooded with carriage returns."""
    disable = not (sys.stderr.isatty() or os.environ.get("VAEEDOF_PROGRESS") == "1")
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)


# Blender's C-level chatter (which Python redirection cannot catch) goes to a log file.
@contextlib.contextmanager
def redirect_fds(log_path: str | os.PathLike | None) -> Iterator[None]:
    if log_path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
