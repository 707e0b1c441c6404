"""The code's shape, as the team agreed it: one package per stage, small modules and functions,
DVC and Snakemake declaring what each stage reads."""

import ast

import yaml

from vaeedof.nets.hybrid import HybridSettings

from .conftest import ROOT

PACKAGE = ROOT / "src" / "vaeedof"
STAGE_PACKAGES = {"assets", "render", "nets", "training", "fusion", "evaluation", "schemas",
                  "release"}  # release: the shipped model's weights and card (data, no code)


def test_package_root_holds_only_shared_utilities():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 14, modules
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == STAGE_PACKAGES


def test_modules_and_functions_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 400:
            too_long.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name}: {length} lines")
    assert not too_long, too_long


def test_dvc_code_deps_exist_and_cover_the_hybrid_settings():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        for dep in stage.get("deps", []):
            if dep.startswith("src/"):
                assert (ROOT / dep).exists(), f"dvc stage {name}: code dependency {dep} does not exist"
    assert {f"fusion.{key}" for key in HybridSettings.KEYS.values()} <= set(stages["train"]["params"][0][
        "params.run.yaml"])
    assert {"src/vaeedof/training/train.py", "src/vaeedof/nets/unet.py"} <= set(stages["train"]["deps"])
    infer_code = {f"src/vaeedof/{m}.py" for m in ("fusion/engine", "nets/unet", "evaluation/infer")}
    assert infer_code <= set(stages["infer"]["deps"])


def test_snakemake_train_rule_reruns_on_the_hybrid_settings():
    from vaeedof import stages

    rule = (ROOT / "workflow" / "rules" / "train.smk").read_text()
    params = rule.split("rule train:")[1].split("params:")[1].split("log:")[0]
    assert 'stage_params("train")' in params
    assert {f"fusion.{key}" for key in HybridSettings.KEYS.values()} <= set(stages.stage("train").params)
