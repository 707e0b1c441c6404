"""Benchmark: the whole `vaeedof fuse` command beside other focus-stacking tools on real stacks, in
the same run: wall seconds (process start to exit, imports and model loading included) and peak
memory (the process's largest resident set, read every 10 ms while it runs).

Stacks, from the real-data folder (`../shared/data/real` here): the Lytro-01 pair (2 x 520x520),
the keyboard focal sweep (32 x 640x360) and the hand-held pcb macro stack (7 x 2048x1536).
Methods: ours as `vaeedof fuse` runs by default (`--quality fast`) and with `--quality max`;
focus-stack (aligns, as ours does with the default `--align auto`), enfuse (contrast weight, hard
mask, no alignment) and openfocus's guided filter, each when installed (else named, not timed).
Prints the table; asserts nothing. `--record` keeps the rows in scripts/stack_speed.csv and the
`stack-speed` figure's table in results/ (docs/fusing.md shows it).

    python scripts/bench_stacks.py REAL_DATA --repeats 3 --record
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaeedof.evaluation.baselines import ENFUSE_ARGS
from vaeedof.evaluation.external import INPUTS, OUT, command_methods
from vaeedof.fusion.files import expand_inputs
from vaeedof.images import image_size

CSV = Path(__file__).parent / "stack_speed.csv"
STACKS = {"Lytro-01 pair": "Lytro/lytro-01", "keyboard": "stacks/keyboard", "pcb": "stacks/pcb"}
OURS, OURS_MAX = "ours (default, --quality fast)", "ours --quality max"
REFERENCE = "focus-stack"  # the yardstick of issue 44: ours within 3x its time
GUIDED_FILTER = "openfocus-guided-filter"
POLL_S = 0.01  # how often a running command's peak memory is read


def commands(checkpoint: str | None) -> dict[str, list[str] | str]:
    """Method -> argv template ({inputs} and {out} filled per stack), or why it cannot run."""
    ours = [sys.executable, "-m", "vaeedof.cli", "fuse", INPUTS, "-o", "{out}.png"]
    if checkpoint:
        ours += ["--checkpoint", checkpoint]
    found = {name: shutil.which(name) for name in ("focus-stack", "enfuse")}
    peers, missing = command_methods({"peers": [GUIDED_FILTER]})  # as the evaluation runs it
    return {
        OURS: ours,
        OURS_MAX: [*ours, "--quality", "max"],
        "focus-stack": [found["focus-stack"], "--output={out}.png", INPUTS] if found["focus-stack"]
        else "not installed",
        "enfuse": [found["enfuse"], *ENFUSE_ARGS, "-o", "{out}.tif", INPUTS] if found["enfuse"]
        else "not installed (Debian package 'enfuse')",
        GUIDED_FILTER: [t.replace(OUT, "{out}.png") for t in peers[GUIDED_FILTER].argv]
        if GUIDED_FILTER in peers else missing[GUIDED_FILTER],
    }


def run_once(template: list[str], frames: list[Path], out: str) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one run of the command."""
    argv = []
    for token in template:
        argv += [str(f) for f in frames] if token == INPUTS else [token.replace(OUT, out)]
    with tempfile.TemporaryFile(mode="w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, _high_water_mib(process.pid))
            time.sleep(POLL_S)
        seconds = time.perf_counter() - start
        if process.returncode != 0:
            errors.seek(0)
            said = errors.read().strip().splitlines()[-1:]
            raise SystemExit(f"bench_stacks: {shlex.join(argv[:4])} ... failed (exit {process.returncode}): "
                             f"{said[0] if said else 'no message'}")
    return seconds, peak


def _high_water_mib(pid: int) -> float:
    """The process's peak resident set so far (Linux: VmHWM). Read from /proc while it runs: the
    kernel's rusage of a child also counts the parent's memory it was forked from, and this
    parent holds torch."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def measure(real: Path, repeats: int, checkpoint: str | None) -> tuple[list[dict], dict[str, str]]:
    rows, skipped = [], {}
    methods = commands(checkpoint)
    with tempfile.TemporaryDirectory(prefix="bench-stacks-") as tmp:
        for stack, folder in STACKS.items():
            frames = expand_inputs([str(real / folder)])
            width, height = image_size(frames[0])
            for method, template in methods.items():
                if isinstance(template, str):
                    skipped[method] = template
                    continue
                out = str(Path(tmp) / f"out_{len(rows)}")
                runs = [run_once(template, frames, out) for _ in range(repeats)]
                row = {"stack": stack, "frames": len(frames), "size": f"{width}x{height}", "method": method,
                       "seconds": round(statistics.median(r[0] for r in runs), 2),
                       "peak_mib": round(max(r[1] for r in runs)), "repeats": repeats}
                rows.append(row)
                print(f"{stack:<14} {method:<32} {row['seconds']:>8.2f} s {row['peak_mib']:>6} MiB",
                      flush=True)
    return rows, skipped


def speed_table(rows: list[dict], skipped: dict[str, str], machine: str) -> str:
    """The `stack-speed` figure: per stack and method, seconds, peak memory and the ratio to
    focus-stack's time (or to enfuse's when focus-stack is not installed)."""
    header = ["stack", "frames", "size", "method", "seconds", "peak MiB", "time / focus-stack's",
              "time / enfuse's"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for stack in dict.fromkeys(r["stack"] for r in rows):
        mine = [r for r in rows if r["stack"] == stack]
        base = {r["method"]: float(r["seconds"]) for r in mine}
        for r in mine:
            seconds = float(r["seconds"])
            ratios = [f"{seconds / base[m]:.1f}" if m in base else "-" for m in (REFERENCE, "enfuse")]
            lines.append(f"| {stack} | {r['frames']} | {r['size']} | {r['method']} | {seconds:.2f} | "
                         f"{r['peak_mib']} | {' | '.join(ratios)} |")
    notes = ["", f"Whole commands, median of {rows[0]['repeats'] if rows else 0} runs each, on {machine}."]
    if skipped:
        notes.append(f"Not run: {'; '.join(f'{m}, {why}' for m, why in skipped.items())}.")
    return "\n".join(lines + notes) + "\n"


def machine() -> str:
    """The CPU's model name and the cores this process may use."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path, help="the real-data folder (Lytro/, stacks/keyboard, stacks/pcb)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per method and stack (median reported)")
    parser.add_argument("--checkpoint", default=None, help="our model (default: as vaeedof fuse chooses)")
    parser.add_argument("--record", action="store_true",
                        help="keep the rows in scripts/stack_speed.csv and the figure's table in results/")
    args = parser.parse_args()
    missing = [folder for folder in STACKS.values() if not (args.real / folder).is_dir()]
    if missing:
        raise SystemExit(f"bench_stacks: {args.real}: no {', '.join(missing)}")
    rows, skipped = measure(args.real, args.repeats, args.checkpoint)
    table = speed_table(rows, skipped, machine())
    print(table, end="")
    if args.record:
        from vaeedof import atomic
        from vaeedof.evaluation import results
        from vaeedof.provenance import git_commit

        atomic.write_csv(CSV, rows)
        made_by = shlex.join(["python", "scripts/bench_stacks.py", *sys.argv[1:]])
        print(f"recorded {CSV} and {results.record('stack-speed', table, made_by, git_commit())}")


if __name__ == "__main__":
    main()
