"""Start training on the right number of processes: `vaeedof train --nproc N|auto` re-executes
itself under torchrun, so neither dvc.yaml nor a Snakemake rule hard-codes a machine setting."""

from __future__ import annotations

import os
import shutil
import sys

from ..errors import VaeedofError


def resolve_nproc(value: str) -> int:
    """'auto': one process per visible GPU; on CPU two (DDP is tested that way; each gets half the
    cores). A number is taken as given."""
    if value != "auto":
        if not value.isdigit() or int(value) < 1:
            raise VaeedofError(f"--nproc: expected a positive number or 'auto', got {value!r}")
        return int(value)
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return min(2, os.cpu_count() or 1)


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
    """The same `vaeedof` command line on `nproc` local processes (rendezvous on this node)."""
    vaeedof = shutil.which("vaeedof") or sys.argv[0]
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
             "--nproc-per-node", str(nproc), "--no-python", vaeedof] + without_nproc(argv))


def relaunch(argv: list[str], nproc: int) -> None:
    """Replace this process by torchrun; returns only when no relaunch is needed."""
    if nproc <= 1 or under_torchrun():
        return
    command = torchrun_command(argv, nproc)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
