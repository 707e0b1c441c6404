"""What every study does with `--record`: its raw rows beside its script, its figure's table in
the project's `results/` (stamped with this command line and the commit), from which `vaeedof
readme` regenerates the documents."""

from __future__ import annotations

import csv
import shlex
import sys
from pathlib import Path

from vaeedof import atomic
from vaeedof.errors import VaeedofError
from vaeedof.evaluation import results
from vaeedof.provenance import git_commit


def command() -> str:
    """This run's command line as it can be typed again (`python -m experiments.<study> ...`)."""
    module = sys.modules["__main__"].__spec__
    return shlex.join(["python", "-m", module.name if module else sys.argv[0], *sys.argv[1:]])


def add_arguments(parser, raw: Path) -> None:
    """The options every study of the model shares: which model, which parameters, whether to record."""
    parser.add_argument("--checkpoint", default=None, help="default: as vaeedof fuse chooses")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--record", action="store_true", help=f"write {raw.name} beside the script and "
                        "the figure's table in results/")


def run_study(run, name: str) -> None:
    """Run a study's `run()`; bad input ends it with one line naming the study, no traceback."""
    try:
        run()
    except VaeedofError as exc:
        raise SystemExit(f"{name}: {exc}") from None


def finish(name: str, table: str, rows: list[dict], raw: Path, record: bool) -> None:
    """Print the figure's table; with `record`, keep the raw rows at `raw` and the table in results/."""
    print(table, end="")
    if record:
        atomic.write_csv(raw, rows)
        figure(name, table)


def figure(name: str, markdown: str) -> None:
    path = results.record(name, markdown, command(), git_commit())
    print(f"recorded {path}")


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def merge_rows(path: Path, label_key: str, label: str, rows: list[dict]) -> list[dict]:
    """Replace the rows of one label (a split) in the study's CSV, keep the others'; all of them."""
    kept = [row for row in read_rows(path) if row.get(label_key) != label]
    fields = list(rows[0]) + sorted({key for row in kept for key in row} - set(rows[0]))
    merged = [{key: str(row.get(key, "")) for key in fields} for row in kept + rows]
    atomic.write_csv(path, merged, fields)
    return merged
