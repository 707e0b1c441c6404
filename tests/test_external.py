"""Methods run as commands (`evaluate.external`) and openfocus's peers, in every table: a command
that fails on a stack is reported for that method and stack, one that cannot run is listed."""

import csv
import json
import logging
import sys

import numpy as np
import pytest
from PIL import Image

from vaeedof.errors import VaeedofError
from vaeedof.evaluation import figures, readme, real_metrics, throughput
from vaeedof.evaluation.baselines import fuse_each, fusion_methods, mean_fusion, unavailable_methods
from vaeedof.evaluation.external import PEERS, CommandMethod, MethodFailed, command_methods
from vaeedof.evaluation.infer import infer
from vaeedof.evaluation.scores import score
from vaeedof.fusion.engine import Fuser
from vaeedof.logs import get_logger
from vaeedof.nets.unet import FusionUNet

from .conftest import ROOT
from .synthetic import random_vae
from .test_evaluate import _pair

EXAMPLE = f"{{python}} {ROOT / 'examples/external_method.py'} --out {{out}} {{inputs}}"


def _failing_on_call(tmp_path, failing_call: int) -> str:
    """A tool that works (the example's fusion) except on its `failing_call`-th run."""
    script = tmp_path / "flaky.py"
    counter = tmp_path / "calls"
    script.write_text(
        "import pathlib, runpy, sys\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "calls = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(calls))\n"
        f"if calls == {failing_call}:\n"
        "    sys.exit('flaky: out of luck')\n"
        f"sys.argv = [{str(ROOT / 'examples/external_method.py')!r}, *sys.argv[1:]]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    return f"{{python}} {script} --out {{out}} {{inputs}}"


def _scenes(data, count=2, size=64):
    for index in range(count):
        scene = data / f"test_{index:05d}"
        scene.mkdir(parents=True)
        inputs, gt = _pair(size, index)
        for name, image in [(f"focus_{k}.png", im) for k, im in enumerate(inputs)] + [("gt.png", gt)]:
            pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(scene / name)
        (scene / "scene.json").write_text(json.dumps({"focus_order": [0, 1]}))


def _fuser():
    return Fuser(FusionUNet(16, 7, (16, 32, 64), 2), random_vae(), "cpu", tile=64)


def test_an_external_command_fuses_a_stack():
    methods = fusion_methods(None, {"external": {"example": EXAMPLE}})
    assert isinstance(methods["example"], CommandMethod)
    inputs, gt = _pair(64)
    inputs = [(x * 255).round() / 255 for x in inputs]  # the frames it gets are 8-bit PNGs
    fused = methods["example"](inputs)
    assert fused.shape == gt.shape
    assert (fused - gt).abs().mean() < (mean_fusion(inputs) - gt).abs().mean() / 2


def test_templates_are_checked_before_anything_runs():
    for name, template, says in [
            ("mine", "tool {inputs}", "must name {inputs} and {out}"),
            ("my tool", "tool {inputs} {out}", "a method name is"),
            ("mean", "tool {inputs} {out}", "built-in method"),
            ("vae_ceiling", "tool {inputs} {out}", "built-in method"),  # a reference's folder
            ("mine", "tool 'unclosed {inputs} {out}", "evaluate.external.mine")]:
        with pytest.raises(VaeedofError, match="evaluate.external.") as caught:
            fusion_methods(None, {"external": {name: template}})
        assert says in str(caught.value)
    with pytest.raises(VaeedofError, match="unknown peer 'stackmff-v9'"):
        command_methods({"peers": ["stackmff-v9"]})


def test_inputs_are_separate_arguments_and_placeholders_expand():
    method = CommandMethod("m", ["tool", "--out={out}", "{inputs}", "--all={inputs}", "{python}"])
    assert method.command(["a b.png", "c.png"], "o.png") == [
        "tool", "--out=o.png", "a b.png", "c.png", "--all=a b.png c.png", sys.executable]


def test_a_failing_command_is_one_line_naming_the_method_and_the_stack(caplog):
    bad = {"external": {"crash": "{python} -c \"import sys; sys.exit('boom: no luck')\" {out} {inputs}",
                        "silent": "{python} -c pass {out} {inputs}",
                        "small": "{python} -c \"import sys; from PIL import Image; "
                                 "Image.new('RGB', (3, 2)).save(sys.argv[1])\" {out} {inputs}"}}
    methods = fusion_methods(None, bad)
    logger = get_logger()
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING):
            fused, failed = fuse_each(methods, _pair(32)[0], "scene_7")
    finally:
        logger.removeHandler(caplog.handler)
    assert set(fused) == {"mean", "laplacian", *({"gff"} & set(methods)), *({"enfuse"} & set(methods))}
    assert failed["crash"] == "exit status 1: boom: no luck"
    assert "wrote no {out} image" in failed["silent"]
    assert failed["small"] == "it wrote a 3x2 image for 32x32 inputs"
    lines = sorted({r.getMessage() for r in caplog.records if "failed on scene_7" in r.getMessage()})
    assert len(lines) == 3 and lines[0] == "method crash failed on scene_7: exit status 1: boom: no luck"
    with pytest.raises(MethodFailed, match="cannot run"):
        CommandMethod("gone", ["/nonexistent/tool", "{inputs}", "{out}"])(_pair(32)[0])


def test_a_missing_command_or_peer_is_listed_not_dropped(monkeypatch):
    import vaeedof.evaluation.external as external

    monkeypatch.setattr(external, "_executable", lambda program: None)
    evaluate = {"peers": ["stackmff-v3"], "external": {"theirs": "no-such-tool {inputs} -o {out}"}}
    assert not {"stackmff-v3", "theirs"} & set(fusion_methods(None, evaluate))
    reasons = unavailable_methods(evaluate)
    assert reasons["stackmff-v3"].startswith("openfocus not installed (./setup.sh --peers")
    assert reasons["theirs"] == "command not found: no-such-tool"


def test_table_1_figures_and_real_stacks_list_external_failures_and_missing_methods(tmp_path, monkeypatch):
    data = tmp_path / "test"
    _scenes(data)
    evaluate = {"external": {"example": EXAMPLE, "flaky": _failing_on_call(tmp_path, 2),
                             "theirs": "no-such-tool {inputs} {out}"}, "peers": []}
    manifest = infer(data, tmp_path / "fused", _fuser(), evaluate=evaluate)
    assert {"example", "flaky"} <= set(manifest["methods"])
    assert list(manifest["failed"]) == ["flaky"] and list(manifest["failed"]["flaky"]) == ["test_00001"]
    assert manifest["unavailable"]["theirs"] == "command not found: no-such-tool"
    assert not (tmp_path / "fused/flaky/test_00001.png").exists()
    summary = score(data, tmp_path / "fused", tmp_path / "reports")
    assert summary["methods"]["example"]["PSNR"] > summary["methods"]["mean"]["PSNR"]
    table = (tmp_path / "reports/table.md").read_text()
    assert "| example |" in table and "| flaky † |" in table
    assert "flaky †: failed on 1 of 2 scenes (first: test_00001, exit status 1: flaky: out of luck)" in table
    assert "| theirs | not run |" in table and "- theirs: not run, command not found: no-such-tool" in table
    per_image = list(csv.DictReader(open(tmp_path / "reports/per_image.csv")))
    assert [r["scene"] for r in per_image if r["method"] == "flaky"] == ["test_00000"]
    difficulty = figures.difficulty_table(data, tmp_path / "fused", patch=16, bins=1)
    patches = {r["method"]: r["patches"] for r in difficulty}
    assert patches["example"] == 2 * 16 and patches["flaky"] == 16  # its tiles of the scene it fused
    figures.methods_sheet(data, tmp_path / "fused", tmp_path / "sheet.png", scenes=2, tile=16)
    assert Image.open(tmp_path / "sheet.png").height == 2 * (16 + 14)

    (tmp_path / "calls").write_text("0")  # fails on its second call: with 3 inputs
    rows = throughput.throughput_table(_fuser(), 64, counts=[2, 3], evaluate=evaluate)
    by = {(r["inputs"], r["method"]): r for r in rows}
    assert by[(2, "example")]["images_per_s"] > 0 and by[(2, "flaky")]["status"] == "ok"
    assert by[(3, "flaky")]["images_per_s"] is None and by[(3, "flaky")]["status"].startswith("failed: exit")
    assert by[(2, "theirs")]["status"] == "not run: command not found: no-such-tool"
    (tmp_path / "reports").mkdir(exist_ok=True)
    with open(tmp_path / "reports/throughput.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    block = readme.throughput_block(tmp_path / "reports")
    assert "| flaky |" in block and "| failed |" in block and "- theirs: not run: command not found" in block

    (tmp_path / "calls").write_text("1")  # fails on the first real stack
    stacks = [(f"s{k}", sorted((data / f"test_{k:05d}").glob("focus_*.png"))) for k in range(2)]
    rows = real_metrics.score_stacks(stacks, _fuser(), evaluate)
    means = {(r["method"]): r for r in real_metrics.collection_means(rows)}
    assert means["flaky"]["inputs"] == 1 and means["flaky"]["status"] == "failed on 1 of 2 stacks"
    assert means["example"]["status"] == "ok" and means["example"]["qabf"] > means["mean"]["qabf"]
    assert means["theirs"]["qabf"] is None and means["theirs"]["status"].startswith("not run")


openfocus = pytest.mark.skipif(not command_methods({"peers": ["stackmff-v3"]})[0],
                               reason="openfocus not installed (./setup.sh --peers)")


@openfocus
@pytest.mark.parametrize("peer", ["stackmff-v3", "openfocus-guided-filter"])
def test_peers_fuse_a_stack(peer):
    inputs, gt = _pair(96)
    inputs = [(x * 255).round() / 255 for x in inputs]
    fused = fusion_methods(None, {"peers": [peer]})[peer](inputs)
    assert fused.shape == gt.shape
    assert (fused - gt).abs().mean() < (mean_fusion(inputs) - gt).abs().mean()


@openfocus
def test_every_peer_names_an_openfocus_method():
    import subprocess

    methods = command_methods({"peers": list(PEERS)})[0]
    help_text = subprocess.run([methods["stackmff-v1"].argv[0], "--help"], capture_output=True,
                               text=True, check=True).stdout
    listed = help_text.split("--method {", 1)[1].split("}", 1)[0].split(",")
    assert set(PEERS.values()) <= set(listed)



def test_a_template_can_be_set_on_the_command_line():
    from vaeedof import params

    template = "{python} tool.py --out {out} {inputs}"
    given = params.given([f"evaluate.external.mine={template}"])
    assert given == {"evaluate": {"external": {"mine": template}}}
    assert params.given(["evaluate.peers=[stackmff-v3]"])["evaluate"]["peers"] == ["stackmff-v3"]
