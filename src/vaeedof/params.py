"""Load and validate params.yaml: one clear error naming the key, before any work starts."""

from __future__ import annotations

import copy
import functools
import os
import reprlib
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
    check_schema(params, schema(), source)
    merged = _merge(schema_defaults(), params)
    check_schema(merged, schema(), source)
    _check_ranges(merged, source)
    return merged


def check_schema(obj, rules: dict, source: str) -> None:
    """One line naming the outermost offending key of `obj` under the JSON Schema `rules`."""
    errors = list(jsonschema.Draft202012Validator(rules).iter_errors(obj))
    if errors:
        error = min(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        message = error.message
        if error.validator == "type":  # jsonschema quotes the whole value, however long
            message = f"{reprlib.repr(error.instance)} is not of type {error.validator_value!r}"
        raise VaeedofError(f"{source}: key '{_key_path(error)}': {message}")


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


def load_or_defaults(path: str | os.PathLike = "params.yaml", overrides: list[str] | None = None) -> dict:
    """The parameter file when it exists (a project folder), else the schema's defaults: what a
    command that works outside a project (`vaeedof fuse`) reads its settings from; `overrides`
    (`--set`) apply to either, checked against the schema."""
    if Path(path).exists():
        return load(path, overrides)
    values = given(overrides)
    check_schema(values, _optional(schema()), "--set")
    return _merge(schema_defaults(), values)


def _optional(node):
    """The schema with no key required: what checks a few keys given alone."""
    if isinstance(node, dict):
        return {k: _optional(v) for k, v in node.items() if k != "required"}
    return [_optional(v) for v in node] if isinstance(node, list) else node


def from_args(args) -> dict:
    """The parameters a `vaeedof` command was given (--params plus --set overrides)."""
    return load(args.params, args.set)


def load(path: str | os.PathLike = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Read, override (`key.sub=value`, YAML-typed) and validate a params file."""
    raw = _read_mapping(path, "parameter file")
    for item in overrides or []:
        _override(raw, item)
    return validate(raw, str(path))


def given(overrides: list[str] | None) -> dict:
    """The `--set` values alone, nested as the parameters are: what the user asked for by name
    (over what a model stores, for example)."""
    tree: dict = {}
    for item in overrides or []:
        _override(tree, item)
    return tree


def _override(tree: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep:
        raise VaeedofError(f"override '{item}': expected key=value")
    _set_dotted(tree, key, _parse_value(value))


def _parse_value(text: str):
    """YAML typing, plus numbers YAML 1.1 leaves as strings (1e-3); text that is not YAML (a
    command template such as `{python} tool.py {inputs}`) is the string it reads."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def with_defaults(dotted: dict) -> dict:
    """Parameters given by dotted key (as dvc.lock records a stage's), nested, over the schema's
    defaults for the keys not given."""
    tree: dict = {}
    for key, value in dotted.items():
        _set_dotted(tree, key, value)
    return _merge(schema_defaults(), tree)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise VaeedofError(f"--set {dotted}: '{'.'.join(parts[:depth + 1])}' is a value, not a section")
    tree[parts[-1]] = value


def write_effective(params: dict, folder: str | os.PathLike) -> Path:
    """Write the effective parameters under a content-addressed name (each job's command names
    it): a second invocation with other parameters never changes what a running one reads."""
    import hashlib

    from .atomic import write_text

    text = yaml.safe_dump(params, sort_keys=True)
    path = Path(folder) / f"params-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.exists():
        write_text(path, text)
    return path


# ---------------------------------------------------------------------------------------------
# Overlays: config/*.yaml hold only what differs from params.yaml; `vaeedof configure` writes
# the merged file DVC reads.
# ---------------------------------------------------------------------------------------------

MERGED = "params.run.yaml"
_SOURCES_MARK = "# vaeedof-configure-sources: "


def _read_mapping(path: str | os.PathLike, what: str) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise VaeedofError(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise VaeedofError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict | None):
        raise VaeedofError(f"{path}: expected a mapping of parameters, got {type(raw).__name__}")
    return raw or {}


def merged(base: str | os.PathLike, overlays: list[str], overrides: list[str] | None = None) -> dict:
    """`base` with each overlay over it in order (a section merges key by key; a value or list
    replaces), then `overrides` (`--set`); each overlay checked alone, so an error names its file."""
    tree = _read_mapping(base, "parameter file")
    for overlay in overlays:
        given = _read_mapping(overlay, "overlay")
        check_schema(given, _optional(schema()), str(overlay))
        tree = _merge(tree, given)
    for item in overrides or []:
        _override(tree, item)
    checked = validate(tree, " + ".join([str(base), *map(str, overlays)] + (["--set"] if overrides else [])))
    return _merge(tree, checked)  # the sources' key order, then the schema's defaults


def recorded_sources(path: str | os.PathLike = MERGED) -> dict | None:
    """The base, overlays and overrides a merged file was written from, or None when `path` does
    not exist; a file `vaeedof configure` did not write is refused, never replaced."""
    import json

    path = _ours(path)
    if not path.exists():
        return None
    line = next(line for line in path.read_text().splitlines() if line.startswith(_SOURCES_MARK))
    try:
        sources = json.loads(line[len(_SOURCES_MARK):])
    except json.JSONDecodeError:
        sources = None
    if not isinstance(sources, dict) or not {"base", "overlays", "set"} <= set(sources):
        raise VaeedofError(f"{path}: its sources line is damaged; write it again: vaeedof configure "
                           "OVERLAY...")
    return sources


def _ours(path: str | os.PathLike) -> Path:
    """`path`, unless it exists and `vaeedof configure` did not write it: such a file is refused,
    never replaced."""
    path = Path(path)
    if path.exists() and not any(line.startswith(_SOURCES_MARK) for line in path.read_text().splitlines()):
        raise VaeedofError(f"{path}: not written by `vaeedof configure`; refusing to replace it "
                           "(move it away)")
    return path


def write_merged(path: str | os.PathLike, base: str, overlays: list[str], overrides: list[str]) -> dict:
    """Write the merged parameters to `path` (atomically, only when they changed), with the
    sources named in its header; returns them."""
    import json
    import shlex

    from .atomic import write_text

    path = _ours(path)
    params = merged(base, overlays, overrides)
    sources = {"base": str(base), "overlays": [str(o) for o in overlays], "set": list(overrides)}
    sets = [word for item in overrides for word in ("--set", item)]
    command = shlex.join(["vaeedof", *(["--params", str(base)] if str(base) != "params.yaml" else []), *sets,
                          "configure", *sources["overlays"]])
    over = " with " + ", ".join(sources["overlays"]) + " over it" if overlays else ""
    text = (f"# Written by `{command}`: {base}{over}{' and the --set values' if overrides else ''}.\n"
            f"# The parameters DVC's stages read. Edit the sources, not this file: `dvc repro` (or\n"
            f"# `vaeedof configure --refresh`) merges them again.\n"
            f"{_SOURCES_MARK}{json.dumps(sources)}\n"
            + yaml.safe_dump(params, sort_keys=False))
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return params


def refresh_merged(path: str | os.PathLike = MERGED, base: str = "params.yaml") -> dict:
    """Merge again the sources `path` names (`base` alone when there is no such file yet)."""
    sources = recorded_sources(path) or {"base": base, "overlays": [], "set": []}
    return write_merged(path, sources["base"], sources["overlays"], sources["set"])
