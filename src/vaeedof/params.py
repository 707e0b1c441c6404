"""Load and validate params.yaml: one clear error naming the key, before any work starts."""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from .errors import VaeedofError

# Defaults for optional keys, so a short params file is enough; the schema documents each key.
DEFAULTS: dict = {
    "assets": {
        "mirrors": [],
        "pins": {},
        "procedural": {
            "subjects_train": 24,
            "subjects_test": 8,
            "backgrounds_train": 6,
            "backgrounds_test": 3,
            "hdris": 10,
            "subject_size": 256,
            "hdri_width": 256,
        },
        "local": {
            "subjects_train": None,
            "subjects_test": None,
            "backgrounds_train": None,
            "backgrounds_test": None,
            "min_subject_size": 64,
            "max_archive_mb": 20000,
        },
        "download": {"hdris": []},
    },
    "scenes": {
        "planes": 5,
        "fstop": [0.1, 1.5],
        "focal_length_mm": [90.0, 120.0],
        "sensor_width_mm": 36.0,
        "plane_distance_m": [1.0, 9.5],
        "background_distance_m": 10.0,
        "subject_height": [0.2, 0.6],
        "rotation_deg": [-30.0, 30.0],
        "hdri_rotation_deg": [0.0, 360.0],
        "world_strength": [0.8, 1.2],
    },
    "patches": {"size": 64, "per_scene": 8, "val_scenes": 2, "val_per_scene": 4, "shard_size": 256},
    "model": {"max_inputs": 7, "widths": [64, 128, 256], "attention_heads": 4},
    "train": {
        "global_batch": 8,
        "lr": 2.0e-4,
        "weight_decay": 0.01,
        "warmup_steps": 20,
        "min_lr_ratio": 0.1,
        "grad_clip": 1.0,
        "ema_decay": 0.999,
        "checkpoint_every": 100,
        "keep_checkpoints": 3,
        "val_every": 100,
        "log_every": 10,
        "augment": True,
        "input_subset_probability": 0.5,
        "hybrid_weight": 1.0,
    },
    "infer": {"tile": 512},
    "fusion": {"output": "hybrid", "hybrid_radius": 2},
    "evaluate": {"difficulty_patch": 32, "difficulty_bins": 6, "throughput_size": 512,
                 "throughput_repeats": 1, "contact_sheet_scenes": 4, "real_stacks": [],
                 "real_stacks_max": 4},
    "render": {
        "crop": None,
        "test_crop": None,
        "gt_samples": None,
        "denoise": True,
        "device": "CPU",
        "contact_sheet_scenes": 4,
    },
}


def schema() -> dict:
    text = resources.files("vaeedof").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


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
    merged = _merge(DEFAULTS, params)
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
