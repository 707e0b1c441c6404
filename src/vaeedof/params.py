"""Load and validate params.yaml: one clear error naming the key, before any work starts."""

from __future__ import annotations

import copy
import functools
import os
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from .errors import VaeedofError


@functools.cache
def _schema_text() -> str:
    return resources.files("vaeedof").joinpath("schemas/params.schema.yaml").read_text()


def schema() -> dict:
    return yaml.safe_load(_schema_text())


def schema_defaults(node: dict | None = None) -> dict:
    """The `default:` of every optional key, nested as the parameters are: the schema is the one
    source of defaults (params.yaml states the demo's values explicitly, for DVC to track)."""
    node = schema() if node is None else node
    out = {}
    for key, child in node.get("properties", {}).items():
        if "default" in child:
            out[key] = copy.deepcopy(child["default"])
        elif child.get("type") == "object" and child.get("properties"):
            nested = schema_defaults(child)
            if nested:
                out[key] = nested
    return out


def _merge(defaults: dict, given: dict) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return path or "(top level)"


def validate(params: dict, source: str = "params.yaml") -> dict:
    """Return params with defaults filled in, or raise VaeedofError naming the offending key."""
    if not isinstance(params, dict):
        raise VaeedofError(f"{source}: expected a mapping of parameters, got {type(params).__name__}")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        error = min(errors, key=lambda e: len(e.absolute_path))
        raise VaeedofError(f"{source}: key '{_key_path(error)}': {error.message}")
    merged = _merge(schema_defaults(), params)
    for error in validator.iter_errors(merged):
        raise VaeedofError(f"{source}: key '{_key_path(error)}': {error.message}")
    _check_ranges(merged, source)
    return merged


def _check_ranges(params: dict, source: str) -> None:
    """Cross-field checks JSON schema cannot express: ordered ranges, background behind planes."""
    scenes = params["scenes"]
    for key in ("fstop", "focal_length_mm", "plane_distance_m", "subject_height", "rotation_deg",
                "hdri_rotation_deg", "world_strength"):
        low, high = scenes[key]
        if low > high:
            raise VaeedofError(f"{source}: key 'scenes.{key}': lower bound {low} > upper {high}")
    render = params["render"]
    for key in ("crop", "test_crop"):
        if render[key] is not None and render[key] > render["resolution"]:
            raise VaeedofError(f"{source}: key 'render.{key}': {render[key]} exceeds render.resolution "
                               f"{render['resolution']}")
    if scenes["plane_distance_m"][1] >= scenes["background_distance_m"]:
        raise VaeedofError(
            f"{source}: key 'scenes.background_distance_m': must lie behind every subject plane "
            f"(> {scenes['plane_distance_m'][1]})"
        )


def load_or_defaults(path: str | os.PathLike = "params.yaml") -> dict:
    """The parameter file when it exists (a project folder), else the schema's defaults: what a
    command that works outside a project (`vaeedof fuse`) reads its settings from."""
    return load(path) if Path(path).exists() else schema_defaults()


def from_args(args) -> dict:
    """The parameters a `vaeedof` command was given (--params plus --set overrides)."""
    return load(args.params, args.set)


def load(path: str | os.PathLike = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Read, override (`key.sub=value`, YAML-typed) and validate a params file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise VaeedofError(f"{path}: parameter file not found") from None
    except yaml.YAMLError as exc:
        raise VaeedofError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise VaeedofError(f"override '{item}': expected key=value")
        _set_dotted(raw, key, _parse_value(value))
    return validate(raw, str(path))


def _parse_value(text: str):
    """YAML typing, plus numbers YAML 1.1 leaves as strings (1e-3)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


# Names the parameter file every `vaeedof` command reads by default (Snakemake sets it).
PARAMS_ENV = "VAEEDOF_PARAMS"


def default_params_path() -> str:
    return os.environ.get(PARAMS_ENV, "params.yaml")


def write_effective(params: dict, folder: str | os.PathLike) -> Path:
    """Write the effective parameters under a content-addressed name and make every child process
    read them: a second invocation with other parameters never changes what a running one reads."""
    import hashlib

    from .atomic import write_text

    text = yaml.safe_dump(params, sort_keys=True)
    path = Path(folder) / f"params-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.exists():
        write_text(path, text)
    os.environ[PARAMS_ENV] = str(path)
    return path
