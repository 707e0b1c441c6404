from pathlib import Path

import pytest
import yaml

from vaeedof import params as params_mod
from vaeedof.cli import main
from vaeedof.errors import VaeedofError

from .conftest import ROOT


def _raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_params_valid():
    params = params_mod.load(ROOT / "params.yaml")
    assert params["scenes"]["planes"] == 5
    assert params["vae"]["name"] == "taef2"


def test_paper_params_valid():
    params = params_mod.merged(ROOT / "params.yaml", [ROOT / "config" / "paper.yaml"])
    assert params["scenes"]["train"] == 10000
    assert params["render"]["resolution"] == 4096 and params["render"]["crop"] is None
    assert params["vae"]["name"] == "taesd3"
    assert params["fusion"] == params_mod.load(ROOT / "params.yaml")["fusion"]  # from the base


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", ["ci", "paper", "release"])
def test_each_config_holds_only_what_differs_from_params_yaml(name):
    base = dict(_leaves(_raw()))
    overlay = dict(_leaves(yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())))
    same = [key for key, value in overlay.items() if key in base and base[key] == value]
    assert not same, f"config/{name}.yaml repeats params.yaml: {same}"
    params_mod.merged(ROOT / "params.yaml", [ROOT / "config" / f"{name}.yaml"])  # and merges valid


def test_configure_writes_the_merged_file_and_refreshes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "config").mkdir()
    (tmp_path / "config/small.yaml").write_text("train:\n  steps: 7\nrender:\n  crop: null\n")
    (tmp_path / "config/more.yaml").write_text("train:\n  steps: 9\n")
    assert main(["--set", "seed=3", "configure", "config/small.yaml", "config/more.yaml"]) == 0
    assert "params.run.yaml: written from params.yaml + config/small.yaml + config/more.yaml" in \
        capsys.readouterr().out
    run = params_mod.load("params.run.yaml")
    assert run["train"]["steps"] == 9 and run["render"]["crop"] is None and run["seed"] == 3
    assert run["train"]["lr"] == params_mod.load("params.yaml")["train"]["lr"]  # the rest of the section
    assert "`vaeedof --set seed=3 configure config/small.yaml config/more.yaml`" in \
        Path("params.run.yaml").read_text().splitlines()[0]
    # An edit of a source reaches the merged file on --refresh (DVC's first stage), sources kept.
    (tmp_path / "config/more.yaml").write_text("train:\n  steps: 11\n")
    assert main(["configure", "--refresh"]) == 0
    assert params_mod.load("params.run.yaml")["train"]["steps"] == 11
    assert params_mod.load("params.run.yaml")["seed"] == 3
    # No overlay: params.yaml alone.
    assert main(["configure"]) == 0
    assert params_mod.load("params.run.yaml") == params_mod.load("params.yaml")


@pytest.mark.parametrize(("overlay", "expected"), [
    ("train:\n  stpes: 7\n", "config/bad.yaml: key 'train': Additional properties"),
    ("train:\n  steps: -1\n", "config/bad.yaml: key 'train.steps'"),
    ("- 1\n", "config/bad.yaml: expected a mapping of parameters, got list"),
    (None, "config/bad.yaml: overlay not found"),
])
def test_a_bad_overlay_is_one_line_naming_it(tmp_path, monkeypatch, capsys, overlay, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "config").mkdir()
    if overlay is not None:
        (tmp_path / "config/bad.yaml").write_text(overlay)
    assert main(["configure", "config/bad.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not Path("params.run.yaml").exists()


def test_configure_replaces_only_its_own_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    Path("params.run.yaml").write_text("seed: 1\n")  # someone's own file
    for argv in (["configure"], ["configure", "--refresh"]):
        assert main(argv) == 2
        assert "not written by `vaeedof configure`" in capsys.readouterr().err
    assert Path("params.run.yaml").read_text() == "seed: 1\n"
    assert main(["configure", "--refresh", "config/ci.yaml"]) == 2
    assert "give no overlays" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda p: p["render"].update(resolution="big"), "render.resolution"),
        (lambda p: p["render"].update(samples=0), "render.samples"),
        (lambda p: p["scenes"].update(fstop=[0.1]), "scenes.fstop"),
        (lambda p: p["scenes"].update(colour="red"), "scenes"),
        (lambda p: p.pop("render"), "(top level)"),
        (lambda p: p.update(seed=-1), "seed"),
        (lambda p: p["scenes"].update(fstop=[1.5, 0.1]), "scenes.fstop"),
        (lambda p: p["scenes"].update(background_distance_m=5.0), "scenes.background_distance_m"),
        (lambda p: p["vae"].update(name="sdxl-vae"), "vae.name"),
    ],
)
def test_bad_params_name_the_key(mutate, key):
    raw = _raw()
    mutate(raw)
    with pytest.raises(VaeedofError) as info:
        params_mod.validate(raw, "params.yaml")
    message = str(info.value)
    assert f"key '{key}'" in message
    assert "\n" not in message


def test_override_and_cli_error(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    assert params_mod.load(path, ["render.samples=32"])["render"]["samples"] == 32
    assert main(["--params", str(path), "--set", "render.samples=-3", "check-params"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "render.samples" in err[0]


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(VaeedofError, match="not found"):
        params_mod.load(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(VaeedofError, match="not valid YAML"):
        params_mod.load(broken)


def test_defaults_have_one_source():
    """The schema is the one home of defaults: params.py keeps none of its own, and the demo's
    params.yaml states exactly the schema's default wherever it gives a key that has one."""
    import vaeedof.params as module

    assert not hasattr(module, "DEFAULTS")
    defaults, given = params_mod.schema_defaults(), _raw()


    flat_defaults = dict(_leaves(defaults))
    differing = {key: (value, flat_defaults[key]) for key, value in _leaves(given)
                 if key in flat_defaults and flat_defaults[key] != value}
    assert not differing, differing
    # A params file holding only the required keys gives the demo's parameters.
    required = {"seed": given["seed"],
                "assets": {k: given["assets"][k] for k in ("subjects", "backgrounds", "hdris")},
                "scenes": {k: given["scenes"][k] for k in ("train", "test")},
                "render": {k: given["render"][k] for k in ("resolution", "samples")},
                "vae": given["vae"], "train": {"steps": given["train"]["steps"]}}
    assert params_mod.validate(required) == params_mod.load(ROOT / "params.yaml")


def test_fuse_settings_outside_a_project_come_from_the_schema(tmp_path):
    settings = params_mod.load_or_defaults(tmp_path / "no-params.yaml")
    assert settings["infer"]["tile"] == params_mod.schema_defaults()["infer"]["tile"]
    assert settings["fusion"]["output"] == "hybrid" and settings["assets"]["mirrors"] == []


def test_set_applies_to_a_project_file_and_to_the_defaults(tmp_path):
    """`--set` reaches the commands that work outside a project (fuse, vae-check, real-sheet,
    real-metrics) as well as those inside one."""
    project = tmp_path / "params.yaml"
    project.write_text((ROOT / "params.yaml").read_text())
    for path in (project, tmp_path / "absent.yaml"):
        loaded = params_mod.load_or_defaults(path, ["infer.tile=128", "fusion.output=latent"])
        assert loaded["infer"]["tile"] == 128 and loaded["fusion"]["output"] == "latent"
    with pytest.raises(VaeedofError, match="key 'infer.tile'"):
        params_mod.load_or_defaults(tmp_path / "absent.yaml", ["infer.tile=100"])


def test_a_damaged_sources_line_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert main(["configure"]) == 0
    damaged = Path("params.run.yaml").read_text().replace('{"base"', '{"bas', 1)
    Path("params.run.yaml").write_text(damaged)
    assert main(["configure", "--refresh"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vaeedof: error: params.run.yaml: its sources line is damaged; write it again: vaeedof "
                   "configure OVERLAY..."], err
    assert Path("params.run.yaml").read_text() == damaged
    assert main(["configure"]) == 0  # what the line says mends it
    assert params_mod.recorded_sources("params.run.yaml")["overlays"] == []
