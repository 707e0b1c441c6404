"""The pipeline's one stage table: per stage its `vaeedof` command, what it reads and writes, the
parameter keys it reads and the package modules it runs. The Snakemake rules take their `params:`
(the values of those keys and a hash of those modules) from here, and dvc.yaml is generated from
it (`vaeedof dvc-yaml`), so a change of a parameter or of a stage's code reruns that stage and
what follows in both tools alike.

A stage's code is found, not listed: the `vaeedof` entry point and the modules its command's
function imports (its own body, the functions of its module it calls, the module's top level),
followed through every import of the package; each package's `__init__` counts too.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from . import params as params_mod
from .errors import VaeedofError
from .scenes import SPLITS

PACKAGE = "vaeedof"


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str  # the CLI call as DVC runs it (`${item}` for each split of a `foreach` stage)
    deps: tuple[str, ...]  # data it reads (folders or files)
    outs: tuple[str, ...]  # what it writes, cached by DVC (and pushed to its remote)
    params: tuple[str, ...]  # dotted parameter keys it reads
    foreach: tuple[str, ...] = ()  # one DVC stage per item (the splits)
    persist: bool = False  # outputs DVC must not delete before a run (the command skips current work)
    cache: bool = True  # False: outputs kept in the workspace only (a generated file, not data)
    # Metrics and plots are cached like the outputs: reports/ is not in git, so the remote is what
    # brings them to a clone (`dvc pull`).
    metrics: tuple[str, ...] = ()
    plots: dict = field(default_factory=dict)  # csv -> (x, y)
    # Keys that set how many jobs Snakemake runs (one per scene), not what a job does.
    count_keys: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        """The `vaeedof` subcommand (its code is the stage's code)."""
        return self.cmd.split()[1]


def keys_of(section: str, *, leaving_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The dotted keys of a parameter section (from the schema), less `leaving_out`."""
    names = params_mod.schema()["properties"][section]["properties"]
    return tuple(f"{section}.{name}" for name in names if name not in leaving_out)


SCENE_COUNTS = tuple(f"scenes.{split}" for split in SPLITS)
WINDOW = ("render.resolution", "render.crop", "render.test_crop")  # the scenes sample within it
HYBRID = keys_of("fusion", leaving_out=("output",))  # the hybrid mix's settings, trained with the model
MODEL = ("models/fusion_ema.safetensors", "models/fusion_ema.json")
COMPARED = ("evaluate.peers", "evaluate.external")  # the methods fused beside ours
EVALUATE = ("evaluate.difficulty_patch", "evaluate.difficulty_bins", "evaluate.contact_sheet_scenes")
SOURCES = ("assets.subjects", "assets.backgrounds", "assets.hdris", "assets.procedural",
           "assets.photographic", "assets.local", "assets.download")

STAGES: tuple[Stage, ...] = (
    # DVC reads the parameters from the merged file (params.yaml with the overlays `vaeedof
    # configure` was given); this stage merges it again when params.yaml or an overlay changes, and
    # the stages below rerun only where a value they read changed. Snakemake merges on its own
    # (--configfile), so it has no such rule.
    Stage("configure", "vaeedof configure --refresh", ("params.yaml", "config"), (params_mod.MERGED,), (),
          persist=True, cache=False),
    Stage("assets", "vaeedof assets build", (), ("resources/assets",),
          ("seed", *SOURCES, "render.resolution")),
    Stage("scenes", "vaeedof scenes --assets resources/assets/index.json --out data/scenes",
          ("resources/assets/index.json",), ("data/scenes",), ("seed", *keys_of("scenes"), *WINDOW),
          count_keys=SCENE_COUNTS),
    Stage("render", "vaeedof render --split ${item} --scenes-dir data/scenes --out data/mattingmfif/${item} "
          "--threads 2 --blender-log logs/render/${item}.blender.log",
          ("data/scenes/${item}", "resources/assets"), ("data/mattingmfif/${item}",),
          keys_of("render", leaving_out=("contact_sheet_scenes",)), foreach=SPLITS, persist=True),
    Stage("contact_sheet", "vaeedof contact-sheet --data data/mattingmfif/${item} "
          "--out reports/dataset/contact_sheet_${item}.png",
          ("data/mattingmfif/${item}",), ("reports/dataset/contact_sheet_${item}.png",),
          ("render.contact_sheet_scenes",), foreach=SPLITS),
    Stage("patches", "vaeedof patches --data data/mattingmfif/train --out data/patches",
          ("data/mattingmfif/train",), ("data/patches",), ("seed", "patches"), persist=True),
    Stage("latents", "vaeedof latents --patches data/patches --out data/latents", ("data/patches",),
          ("data/latents",), ("vae",), persist=True),
    # Resumes from models/checkpoints/<run key>/ (kept outside the outputs), so a rerun after
    # Snakemake trained, or a larger train.steps, continues instead of starting over.
    Stage("train", "vaeedof train --nproc auto --latents data/latents --patches data/patches --out models",
          ("data/latents", "data/patches"), MODEL, ("seed", "model", "train", "patches", "vae", *HYBRID)),
    Stage("infer", "vaeedof infer --data data/mattingmfif/test --out data/fused",
          (*MODEL, "data/mattingmfif/test"), ("data/fused",), ("infer.tile", *COMPARED)),
    Stage("evaluate", "vaeedof evaluate --data data/mattingmfif/test --fused data/fused --reports reports",
          ("data/fused", "data/mattingmfif/test", MODEL[0]),
          ("reports/per_image.csv", "reports/table.md", "reports/contact_sheet_methods.png",
           "reports/difficulty.png"), EVALUATE,
          metrics=("reports/metrics.json",), plots={"reports/difficulty.csv": ("difficulty", "psnr")}),
    Stage("throughput", "vaeedof throughput --reports reports", MODEL, ("reports/throughput.png",),
          ("infer.tile", "evaluate.throughput_size", "evaluate.throughput_repeats", *COMPARED),
          plots={"reports/throughput.csv": ("inputs", "images_per_s")}),
    Stage("handheld", "vaeedof handheld --data data/mattingmfif/test --out data/handheld/test",
          ("data/mattingmfif/test",), ("data/handheld/test",), ("seed", "evaluate.handheld")),
    Stage("infer_handheld", "vaeedof infer --data data/handheld/test --out data/fused_handheld --align auto",
          (*MODEL, "data/handheld/test"), ("data/fused_handheld",), ("infer.tile", *COMPARED)),
    Stage("evaluate_handheld", "vaeedof evaluate --data data/handheld/test --fused data/fused_handheld "
          "--reports reports/handheld --variant handheld",
          ("data/fused_handheld", "data/handheld/test", MODEL[0]),
          ("reports/handheld/per_image.csv", "reports/handheld/table.md",
           "reports/handheld/contact_sheet_methods.png", "reports/handheld/difficulty.png",
           "reports/handheld/difficulty.csv"), EVALUATE, metrics=("reports/handheld/metrics.json",)),
    Stage("real_sheet", "vaeedof real-sheet --out reports/contact_sheet_real.png", MODEL,
          ("reports/contact_sheet_real.png",),
          ("infer.tile", "evaluate.real_stacks", "evaluate.real_stacks_max", *COMPARED)),
    Stage("real_metrics", "vaeedof real-metrics --reports reports", MODEL, ("reports/real_metrics.csv",),
          ("infer.tile", "evaluate.real_stacks", *COMPARED)),
)
BY_NAME = {stage.name: stage for stage in STAGES}
# Stages that fuse real stacks: in the pipeline only when evaluate.real_stacks names some.
REAL_STACK_STAGES = ("real_sheet", "real_metrics")
DVC_ONLY = ("configure",)


def stage(name: str) -> Stage:
    return BY_NAME[name]


def values(name: str, params: dict, *, per_job: bool = False) -> dict:
    """The values of the keys stage `name` reads, by dotted key; `per_job`: without the keys that
    only set how many jobs there are (a Snakemake job is one scene)."""
    chosen = stage(name).params
    if per_job:
        chosen = tuple(k for k in chosen if k not in stage(name).count_keys)
    out = {}
    for dotted in chosen:
        node = params
        for part in dotted.split("."):
            node = node[part]
        out[dotted] = node
    return out


# ---------------------------------------------------------------------------------------------
# The code a stage runs
# ---------------------------------------------------------------------------------------------


def _source_root() -> Path:
    return Path(str(resources.files(PACKAGE)))


@functools.cache
def _module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    root = _source_root()
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _imported(node: ast.AST, module: str) -> set[str]:
    """Package modules imported anywhere under `node` of `module`'s syntax tree."""
    files = _module_files()
    package = module if files[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for item in ast.walk(node):
        if isinstance(item, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - item.level + 1] if item.level else []
            origin = ".".join(base + ([item.module] if item.module else []))
            for alias in item.names:
                found |= {name for name in (f"{origin}.{alias.name}", origin) if name in files}
        elif isinstance(item, ast.Import):
            found |= {alias.name for alias in item.names if alias.name in files}
    return found


# This module is not a stage's code and is not followed: what a stage takes from it (the keys it
# reads) reaches the stage as its parameter values, and an edit of another stage's entry must not
# rerun it.
NOT_CODE = {f"{PACKAGE}.stages"}


def _with_packages(modules: set[str]) -> set[str]:
    """The modules and every package above them (their `__init__` runs on import)."""
    parts = (module.split(".") for module in modules)
    return {".".join(p[:i]) for p in parts for i in range(1, len(p) + 1)} & set(_module_files())


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(_module_files()[module].read_text())


def _top_level(module: str) -> ast.Module:
    """A module's statements less its functions and classes: what importing it runs."""
    body = [n for n in _tree(module).body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    return ast.Module(body=body, type_ignores=[])


def _entry_modules(func) -> set[str]:
    """The modules a command function imports: its own body, the functions of its module it
    names (followed), and its module's top level."""
    module = func.__module__
    functions = {n.name: n for n in _tree(module).body if isinstance(n, ast.FunctionDef)}
    found, todo, seen = _imported(_top_level(module), module) | {module}, [func.__name__], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        found |= _imported(functions[name], module)
        todo += [n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name)]
    return found


@functools.cache
def _commands() -> dict[str, object]:
    """Subcommand -> the function that runs it."""
    from .cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return {name: parser.get_default("func") for name, parser in subparsers.choices.items()}


@functools.cache
def code_modules(name: str) -> tuple[str, ...]:
    """Every package module stage `name` runs, sorted. The modules holding commands are followed
    only through their top level: each of their functions is one command's."""
    dispatch = {func.__module__ for func in _commands().values()}
    # The `vaeedof` entry point (parsing, the one-line errors) runs for every command.
    found, todo = set(), [f"{PACKAGE}.cli", *_entry_modules(_commands()[stage(name).command])]
    while todo:
        module = todo.pop()
        if module not in found and module not in NOT_CODE:
            found.add(module)
            todo += _imported(_top_level(module) if module in dispatch else _tree(module), module)
    return tuple(sorted(_with_packages(found)))


def code_files(name: str) -> list[str]:
    """The stage's modules as paths in the project (`src/vaeedof/...`), for DVC."""
    root = _source_root().parent
    return [str(PurePosixPath("src", *_module_files()[module].relative_to(root).parts))
            for module in code_modules(name)]


def code_version(name: str) -> str:
    """sha256 over the stage's modules (names and bytes): what Snakemake compares between runs."""
    digest = hashlib.sha256()
    for module in code_modules(name):
        digest.update(module.encode() + b"\0" + _module_files()[module].read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# dvc.yaml, generated
# ---------------------------------------------------------------------------------------------

DVC_HEADER = """\
# Generated by `vaeedof dvc-yaml` from the stage table (src/vaeedof/stages.py): edit the table,
# not this file; `vaeedof dvc-yaml --check` (in the tests) fails when it is stale. Each stage lists
# the parameter keys its command reads and the package modules it runs, as the Snakemake rules do.
# The parameters are read from {merged}, params.yaml with the overlays `vaeedof configure`
# was given (config/ci.yaml, config/paper.yaml, config/release.yaml); the first stage merges it
# again when a source changes. Persistent outputs are not deleted before a run: their commands
# skip work that is current.
# {real} read folders outside the project, which DVC
# cannot track: Snakemake runs them when evaluate.real_stacks names some.
"""


def _dvc_stage(item: Stage) -> dict:
    def out(path: str) -> str | dict:
        flags = {"persist": True} if item.persist else {}
        flags |= {} if item.cache else {"cache": False}
        return {path: flags} if flags else path

    # Every other command reads the merged file, and names it, so a command copied from DVC's
    # log reproduces the stage.
    cmd = item.cmd if item.name in DVC_ONLY else item.cmd.replace("vaeedof ", f"vaeedof --params "
                                                                  f"{params_mod.MERGED} ", 1)
    body: dict = {"cmd": cmd, "deps": [*code_files(item.name), *item.deps]}
    if item.params:
        body["params"] = [{params_mod.MERGED: list(item.params)}]
    body["outs"] = [out(path) for path in item.outs]
    if item.metrics:
        body["metrics"] = list(item.metrics)
    if item.plots:
        body["plots"] = [{path: {"x": x, "y": y}} for path, (x, y) in item.plots.items()]
    return {"foreach": list(item.foreach), "do": body} if item.foreach else body


def dvc_yaml() -> str:
    """dvc.yaml's text: every stage of the table but the real-stack ones."""
    import yaml

    stages = {item.name: _dvc_stage(item) for item in STAGES if item.name not in REAL_STACK_STAGES}
    text = yaml.safe_dump({"stages": stages}, sort_keys=False, width=100)
    return DVC_HEADER.format(real=" and ".join(REAL_STACK_STAGES), merged=params_mod.MERGED) + text


def write_dvc_yaml(path: str | Path, check: bool) -> bool:
    """Write dvc.yaml (atomically) unless current; `check`: only say whether it is. True when
    the file was (or would have to be) changed."""
    from . import atomic

    path = Path(path)
    wanted = dvc_yaml()
    existing = path.read_text() if path.exists() else None
    stale = existing != wanted
    if stale and not check:
        if existing is not None and not existing.startswith(DVC_HEADER.splitlines()[0]):
            raise VaeedofError(f"{path}: not written by `vaeedof dvc-yaml`; refusing to overwrite it "
                               "(move it away first)")
        atomic.write_text(path, wanted)
    return stale


# ---------------------------------------------------------------------------------------------
# Snakemake's results recorded for DVC
# ---------------------------------------------------------------------------------------------


def _dvc_names(item: Stage) -> list[tuple[str, str]]:
    """(DVC's name, the item) of each DVC stage a table stage makes: `render@train` per split."""
    return [(f"{item.name}@{each}", each) for each in item.foreach] or [(item.name, "")]


def finished_stages(used: dict, tracked: dict) -> list[str]:
    """DVC's names of the stages whose outputs all exist and whose parameter values in `used`
    (what the run read) equal those in `tracked` (the merged file, what DVC compares)."""
    names = []
    for item in STAGES:
        if item.name in REAL_STACK_STAGES or values(item.name, used) != values(item.name, tracked):
            continue
        for name, each in _dvc_names(item):
            outputs = [p.replace("${item}", each) for p in (*item.outs, *item.metrics, *item.plots)]
            if all(Path(p).exists() for p in outputs):
                names.append(name)
    return names


def commit_to_dvc(used: dict, tracked: dict) -> list[str]:
    """Record in dvc.lock the stages a Snakemake run finished (`dvc commit`), so `dvc repro`
    finds them current; nothing outside a DVC project or without `dvc`."""
    import shutil
    import subprocess

    from .logs import get_logger

    log = get_logger()
    if not Path(".dvc").is_dir() or shutil.which("dvc") is None:
        log.info("dvc.lock not updated: no DVC project here, or no `dvc` command")
        return []
    names = finished_stages(used, tracked)
    skipped = [s.name for s in STAGES if s.name not in REAL_STACK_STAGES
               and not any(n.split("@")[0] == s.name for n in names)]
    if names:
        done = subprocess.run(["dvc", "commit", "--force", "--quiet", *names], capture_output=True, text=True)
        if done.returncode:
            reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise VaeedofError(f"dvc commit {' '.join(names)}: failed ({reason})")
    if skipped:
        log.info("dvc.lock: not recorded (not built, or built with parameters other than %s's; "
                 "`vaeedof configure` with the same overlays makes DVC read them): %s", params_mod.MERGED,
                 ", ".join(skipped))
    log.info("dvc.lock: recorded %s", ", ".join(names) or "nothing")
    return names
