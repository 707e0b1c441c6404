"""Methods the evaluation runs as commands: any tool a researcher names in `evaluate.external`
(name -> command template) and the deep-learning and classical peers that openfocus ships
(`evaluate.peers`, when installed: `./setup.sh --peers`). Each call writes the stack as PNG
frames to a temporary folder, runs the command and reads its output back, so a method is timed
as its whole command, process start included.

A template names `{inputs}` (the frames, as separate arguments, in stack order) and `{out}` (the
PNG the tool must write); `{python}` is the Python running vaeedof. It runs without a shell from
the current folder."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..errors import VaeedofError
from ..images import read_image, save_image

INPUTS, OUT, PYTHON = "{inputs}", "{out}", "{python}"
COMMAND_TIMEOUT_S = 3600  # one stack; a tool stuck longer fails on that stack, the run goes on
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# openfocus 1.72.0 (MIT, weights inside its wheel): our name -> its --method. StackMFF V1-V3 are
# its learned methods; guided filtering and DT-CWT its strongest classical ones on our stacks.
OPENFOCUS = "openfocus"
PEERS = {"stackmff-v1": "stackmff", "stackmff-v2": "stackmffv2", "stackmff-v3": "stackmffv3",
         "openfocus-guided-filter": "guided_filter", "openfocus-dtcwt": "dtcwt"}
PEERS_SETUP = "./setup.sh --peers (openfocus, requirements-peers.txt)"


class MethodFailed(VaeedofError):
    """A method that could not fuse one stack: reported for that method and stack, the run goes on."""


class CommandMethod:
    """A fusion method run as a command: stack (list of (3, H, W) floats) -> fused (3, H, W)."""

    def __init__(self, name: str, argv: list[str]):
        self.name, self.argv = name, argv

    def __repr__(self) -> str:
        return f"CommandMethod({self.name!r}, {shlex.join(self.argv)!r})"

    def command(self, inputs: list[str], out: str) -> list[str]:
        argv = []
        for token in self.argv:
            if token == INPUTS:
                argv += inputs
            else:
                argv.append(token.replace(OUT, out).replace(INPUTS, " ".join(inputs))
                            .replace(PYTHON, sys.executable))
        return argv

    def __call__(self, stack: list[torch.Tensor]) -> torch.Tensor:
        with tempfile.TemporaryDirectory(prefix="vaeedof-method-") as tmp:
            inputs = []
            for index, frame in enumerate(stack):
                inputs.append(str(Path(tmp) / f"frame_{index:03d}.png"))
                save_image(frame.float().cpu(), inputs[-1])
            out = Path(tmp) / "out" / "fused.png"
            out.parent.mkdir()
            argv = self.command(inputs, str(out))
            try:
                result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                                        stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise MethodFailed(f"no result within {COMMAND_TIMEOUT_S} s") from None
            except OSError as exc:
                raise MethodFailed(f"cannot run {argv[0]}: {exc.strerror}") from None
            if result.returncode != 0:
                said = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
                raise MethodFailed(f"exit status {result.returncode}"
                                   + (f": {said[0][:200]}" if said else ""))
            if not out.is_file():
                raise MethodFailed("the command exited 0 but wrote no {out} image")
            try:
                fused = read_image(out)
            except VaeedofError as exc:
                raise MethodFailed(f"its output is not an image: {exc}") from None
        if fused.shape != stack[0].shape:
            raise MethodFailed(f"it wrote a {fused.shape[2]}x{fused.shape[1]} image for "
                               f"{stack[0].shape[2]}x{stack[0].shape[1]} inputs")
        return fused


def parse_template(name: str, template: str) -> list[str]:
    """A template's arguments; one line naming the parameter when it cannot run a method."""
    where = f"evaluate.external.{name}"
    if not NAME.fullmatch(name):
        raise VaeedofError(f"{where}: a method name is letters, digits, '_', '.', '-' (it names a folder)")
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        raise VaeedofError(f"{where}: {exc}") from None
    if not argv or not any(INPUTS in t for t in argv) or not any(OUT in t for t in argv):
        raise VaeedofError(f"{where}: the command must name {INPUTS} and {OUT}: {template!r}")
    return argv


def _executable(program: str) -> str | None:
    """`program` as the command would find it, or beside this Python (a venv not activated)."""
    if program == PYTHON:
        return sys.executable
    beside = Path(sys.executable).parent / program
    return shutil.which(program) or (str(beside) if "/" not in program and beside.is_file() else None)


def command_methods(evaluate: dict, taken: set[str] = frozenset()) -> tuple[dict, dict]:
    """The runnable command methods of the `evaluate` params, name -> CommandMethod, and the rest,
    name -> why they did not run. `taken`: the names of the built-in methods."""
    methods, unavailable = {}, {}
    openfocus = _executable(OPENFOCUS)
    for name in evaluate.get("peers", []):
        if name not in PEERS:
            raise VaeedofError(f"evaluate.peers: unknown peer {name!r} (known: {', '.join(PEERS)})")
        if openfocus is None:
            unavailable[name] = f"openfocus not installed ({PEERS_SETUP})"
        else:
            methods[name] = CommandMethod(name, [openfocus, "-i", INPUTS, "-o", OUT, "-m", PEERS[name]])
    for name, template in evaluate.get("external", {}).items():
        argv = parse_template(name, template)
        if name in taken or name in PEERS:
            raise VaeedofError(f"evaluate.external.{name}: the name of a built-in method; choose another")
        program = _executable(argv[0])
        if program is None:
            unavailable[name] = f"command not found: {argv[0]}"
        else:
            methods[name] = CommandMethod(name, [program, *argv[1:]])
    return methods, unavailable


def peer_versions() -> dict:
    """Installed peer packages and their versions, for the reports."""
    try:
        return {OPENFOCUS: importlib.metadata.version(OPENFOCUS)}
    except importlib.metadata.PackageNotFoundError:
        return {}
