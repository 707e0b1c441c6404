"""The code's shape, as the team agreed it: one package per stage, modules cut by meaning (not by
length), short functions, DVC and Snakemake declaring what each stage reads."""

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


def test_functions_stay_short():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name}: {length} lines")
    assert not too_long, too_long


def _imports(module: str) -> set[str]:
    """The package modules a module of vaeedof imports (relative imports resolved)."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    package = module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            found.add(".".join([*base, node.module] if node.module else base))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vaeedof."):
            found.add(node.module.removeprefix("vaeedof."))
    return found


def test_training_does_not_reach_into_evaluation():
    for path in (PACKAGE / "training").glob("*.py"):
        module = f"training.{path.stem}"
        assert not {m for m in _imports(module) if m.startswith("evaluation")}, module


def test_the_command_line_is_built_in_one_place():
    builders = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if "add_parser(" in p.read_text()]
    assert [str(p) for p in builders] == ["cli.py"], builders


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


def test_the_conda_environment_installs_what_setup_installs():
    """--software-deployment-method conda gets the same packages as setup.sh: requirements.txt,
    requirements-nodeps.txt without their dependencies, the package itself; enfuse too."""
    env = yaml.safe_load((ROOT / "workflow/envs/vaeedof.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert "-r ../../requirements.txt" in pip and any(line.startswith("--editable ../..") for line in pip)
    assert "python=3.11" in env["dependencies"] and "enblend-enfuse" in env["dependencies"]
    post_deploy = (ROOT / "workflow/envs/vaeedof.post-deploy.sh").read_text()
    assert "pip install --no-deps -r requirements-nodeps.txt" in post_deploy
    setup = (ROOT / "setup.sh").read_text()
    for installed in ("-r requirements.txt", "--no-deps -r requirements-nodeps.txt"):
        assert installed in setup, installed
