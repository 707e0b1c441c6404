"""The one stage table (vaeedof.stages): dvc.yaml is generated from it, the Snakemake rules take
their params from it, and each stage's code is what its command imports."""

import copy
import re

import yaml

from vaeedof import stages
from vaeedof.cli import main

from .conftest import ROOT


def test_committed_dvc_yaml_is_the_generated_one(capsys):
    assert main(["dvc-yaml", "--check", "--out", str(ROOT / "dvc.yaml")]) == 0
    assert "current" in capsys.readouterr().out


def test_check_fails_on_a_stale_dvc_yaml_and_writing_fixes_it(tmp_path, capsys):
    stale = tmp_path / "dvc.yaml"
    stale.write_text((ROOT / "dvc.yaml").read_text().replace("- infer.tile", "- infer"))
    assert main(["dvc-yaml", "--check", "--out", str(stale)]) == 2
    assert "differs from the stage table" in capsys.readouterr().err
    assert main(["dvc-yaml", "--out", str(stale)]) == 0
    assert stale.read_text() == stages.dvc_yaml()
    foreign = tmp_path / "theirs.yaml"  # a dvc.yaml the command did not write is left alone
    foreign.write_text("stages: {}\n")
    assert main(["dvc-yaml", "--out", str(foreign)]) == 2
    assert foreign.read_text() == "stages: {}\n"
    assert "not written by `vaeedof dvc-yaml`" in capsys.readouterr().err


def test_dvc_yaml_holds_every_stage_with_its_keys_and_code():
    dvc = yaml.safe_load(stages.dvc_yaml())["stages"]
    assert set(dvc) == {s.name for s in stages.STAGES} - set(stages.REAL_STACK_STAGES)
    render = dvc["render"]["do"]

    def keys(body):  # every stage reads the merged file (vaeedof configure) and names it
        assert body["cmd"].startswith("vaeedof --params params.run.yaml "), body["cmd"]
        [(name, listed)] = [item for entry in body["params"] for item in entry.items()]
        return name == "params.run.yaml" and listed

    assert dvc["render"]["foreach"] == ["train", "test"]
    assert "render.contact_sheet_scenes" not in keys(render) and "render.samples" in keys(render)
    assert keys(dvc["contact_sheet"]["do"]) == ["render.contact_sheet_scenes"]
    assert "src/vaeedof/render/blender_scene.py" in render["deps"]
    assert set(keys(dvc["throughput"])) >= {"infer.tile", "evaluate.throughput_size"}
    assert "assets.photographic" in keys(dvc["assets"])
    # The first stage merges params.yaml and the overlays again; the file is not data to cache.
    assert dvc["configure"] == {"cmd": "vaeedof configure --refresh", "deps": [
        *stages.code_files("configure"), "params.yaml", "config"],
        "outs": [{"params.run.yaml": {"persist": True, "cache": False}}]}


def test_params_yaml_states_every_key_a_stage_reads():
    """DVC refuses a stage whose parameter key params.yaml lacks."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for item in stages.STAGES:
        for dotted in item.params:
            node = raw
            for part in dotted.split("."):
                assert isinstance(node, dict) and part in node, f"{item.name}: {dotted}"
                node = node[part]


def test_stage_code_is_what_its_command_imports():
    def code(name):
        return {m.removeprefix("vaeedof.") for m in stages.code_modules(name)}

    # A metric's code belongs to the evaluation stages alone.
    assert {s.name for s in stages.STAGES if "evaluation.metrics" in code(s.name)} == {
        "evaluate", "evaluate_handheld", "real_metrics"}
    assert {"render.blender_scene", "render.renderer", "scenes"} <= code("render")
    assert {"nets.unet", "training.train", "training.state"} <= code("train")
    assert {"fusion.engine", "fusion.loader", "nets.unet", "evaluation.infer"} <= code("infer")
    assert not {m for m in code("render") if m.startswith(("training", "nets"))}
    assert "stages" not in code("train")  # the table reaches a stage as its parameter values
    assert all(f.startswith("src/vaeedof/") and f.endswith(".py") for f in stages.code_files("infer"))


def test_code_version_follows_the_stages_modules(tmp_path, monkeypatch):
    before = {s.name: stages.code_version(s.name) for s in stages.STAGES}
    metrics = stages._module_files()["vaeedof.evaluation.metrics"]
    copy = tmp_path / "metrics.py"
    copy.write_text(metrics.read_text() + "\n# an edit\n")
    monkeypatch.setitem(stages._module_files(), "vaeedof.evaluation.metrics", copy)
    changed = {s.name for s in stages.STAGES if stages.code_version(s.name) != before[s.name]}
    assert changed == {"evaluate", "evaluate_handheld", "real_metrics"}


def test_values_are_the_stages_keys(params):
    values = stages.values("scenes", params)
    assert values["scenes.train"] == params["scenes"]["train"] and values["seed"] == params["seed"]
    per_job = stages.values("scenes", params, per_job=True)
    assert "scenes.train" not in per_job and per_job["scenes.planes"] == params["scenes"]["planes"]
    assert stages.values("train", params)["fusion.hybrid_radius"] == params["fusion"]["hybrid_radius"]


def test_every_snakemake_rule_takes_its_params_from_the_table():
    rules = {}
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", path.read_text(), re.M):
            rules[name] = body
    assert set(rules) == {s.name for s in stages.STAGES} - set(stages.DVC_ONLY)
    for name, body in rules.items():
        assert re.search(rf"params:\n\s+stage_params\(\"{name}\"", body), name


def test_only_finished_stages_built_with_params_yaml_are_recorded_for_dvc(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    for split in ("train", "test"):
        (tmp_path / f"data/mattingmfif/{split}").mkdir(parents=True)
    (tmp_path / "data/scenes").mkdir(parents=True)
    (tmp_path / "resources/assets").mkdir(parents=True)
    assert stages.finished_stages(params, params) == ["assets", "scenes", "render@train", "render@test"]
    other = copy.deepcopy(params)
    other["render"]["samples"] += 1  # a run with --config render.samples=...: not what DVC tracks
    assert stages.finished_stages(other, params) == ["assets", "scenes"]
    assert stages.commit_to_dvc(params, params) == []  # no DVC project here: nothing, no error


def test_every_job_command_names_its_parameter_file():
    """No hidden channel: a command copied from Snakemake's log reads what the job read."""
    commands = []
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        commands += re.findall(r'shell:\n\s+"([^"]*)"', path.read_text())
    assert len(commands) == len(stages.STAGES) - len(stages.DVC_ONLY)
    assert all(command.startswith("{VAEEDOF} ") for command in commands), commands
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'VAEEDOF = f"vaeedof --params {EFFECTIVE_PARAMS}"' in common
