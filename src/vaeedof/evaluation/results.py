"""`results/`: the small committed tables the README and docs/ figures are generated from. Each
file is one figure's table as CSV, stamped with the command that made it and the commit of the
code that ran; `vaeedof readme` renders it between the document's markers, so every figure can be
regenerated from a clone. The pipeline's tables are collected from `reports/` and `benchmarks/`
(`vaeedof readme --collect`); a study under `experiments/` writes its own (`record`)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .. import atomic
from ..errors import VaeedofError

FOLDER = Path("results")
_STAMPS = ("made by", "commit", "source")


def parse(markdown: str) -> tuple[list[str], list[list[str]], list[str]]:
    """A generated block (a markdown table, then free lines) as header, rows and the lines after."""
    lines = markdown.rstrip("\n").split("\n")
    table = []
    while lines and lines[0].startswith("|"):
        table.append(lines.pop(0))
    if len(table) < 2:
        raise VaeedofError("a result block must start with a markdown table")

    def cells(line: str) -> list[str]:
        return line[2:-2].split(" | ")

    return cells(table[0]), [cells(line) for line in table[2:]], lines


def render(header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + notes) + "\n"


def record(name: str, markdown: str, made_by: str, commit: str, source: str | None = None,
           folder: str | os.PathLike = FOLDER) -> Path:
    """Write figure `name`'s table (`markdown`: the block as it is shown) to `<folder>/<name>.csv`."""
    path = Path(folder) / f"{name}.csv"
    if path.exists() and not path.read_text().startswith("# made by: "):
        raise VaeedofError(f"{path}: not a recorded table (no '# made by:' stamp); refusing to replace it")
    header, rows, notes = parse(markdown)
    if render(header, rows, notes) != markdown.rstrip("\n") + "\n":
        raise VaeedofError(f"{name}: the block does not survive as a table (a cell holds ' | '?)")
    out = io.StringIO()
    stamps = {"made by": made_by, "commit": commit, "source": source}
    out.write("".join(f"# {key}: {value}\n" for key, value in stamps.items() if value))
    out.write("".join(f"# note: {line}\n" for line in notes))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic.write_text(path, out.getvalue())
    return path


def block(name: str, folder: str | os.PathLike = FOLDER) -> str:
    """Figure `name` as shown: its table, its notes and where it came from."""
    path = Path(folder) / f"{name}.csv"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise VaeedofError(f"{path}: not recorded (vaeedof readme --collect after the pipeline, or "
                           "the study's script)") from None
    stamps, notes, body = {}, [], []
    for line in text.splitlines(keepends=True):
        key, sep, value = line[2:].rstrip("\n").partition(": ")
        if line.startswith("# note: ") or line == "# note:\n":
            notes.append(line[len("# note: "):].rstrip("\n"))
        elif line.startswith("# ") and sep and key in _STAMPS:
            stamps[key] = value
        else:
            body.append(line)
    if "made by" not in stamps or "commit" not in stamps:
        raise VaeedofError(f"{path}: no '# made by:' and '# commit:' stamp")
    table = list(csv.reader(body))
    if not table or any(len(row) != len(table[0]) for row in table):
        raise VaeedofError(f"{path}: not a table (no header, or rows of another width than it)")
    header, *rows = table
    origin = f"From `{path.as_posix()}`: `{stamps['made by']}` at commit {stamps['commit'][:12]}"
    origin += f" ({stamps['source']})." if stamps.get("source") else "."
    return render(header, rows, [*notes, "", origin])
