"""The README is short and true: its figures regenerate from committed files, it names no
machine-local path, and every link of it and of docs/ leads to a file of the repository."""

import re

import pytest

from vaeedof.cli import main
from vaeedof.errors import VaeedofError
from vaeedof.evaluation import results

from .conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_short_and_every_figure_comes_from_committed_files(capsys, monkeypatch):
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    monkeypatch.chdir(ROOT)  # results/ as a clone has it; reports/ is not read
    assert main(["readme", *(str(d.relative_to(ROOT)) for d in DOCUMENTS), "--check"]) == 0, \
        capsys.readouterr().err


def test_every_result_table_names_what_made_it(tmp_path):
    for table in sorted((ROOT / "results").glob("*.csv")):
        head = table.read_text().splitlines()[:2]
        assert head[0].startswith("# made by: ") and head[1].startswith("# commit: "), table.name
    with pytest.raises(VaeedofError, match="no '# made by:'"):  # an unstamped table is refused
        (tmp_path / "bare.csv").write_text("a,b\n1,2\n")
        results.block("bare", tmp_path)


def test_a_block_survives_as_a_table(tmp_path):
    markdown = "| method | PSNR |\n|---|---|\n| gff | 32.03 |\n\n24 scenes.\n"
    results.record("t", markdown, "made", "abc", folder=tmp_path)
    assert results.block("t", tmp_path) == markdown + "\nFrom `" + (tmp_path / "t.csv").as_posix() + \
        "`: `made` at commit abc.\n"


def test_readme_names_no_machine_local_path():
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"\.\./shared\S*|/work/\S*|/root/\S*|/tmp/\S*|RELEASE_RUN\S*", text)
    assert not found, found


@pytest.mark.parametrize("document", DOCUMENTS[1:], ids=lambda p: p.name)
def test_docs_name_no_folder_of_the_team_s_machines(document):
    found = re.findall(r"\.\./shared\S*|/work/\S*|RELEASE_RUN\S*", document.read_text())
    assert not found, found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(document):
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        if not (document.parent / target).exists():
            missing.append(target)
    assert not missing, f"{document.name}: {missing}"


def test_a_damaged_or_foreign_table_is_one_line_and_kept(tmp_path):
    (tmp_path / "cut.csv").write_text("# made by: x\n# commit: abc\na,b\n1\n")
    with pytest.raises(VaeedofError, match="cut.csv: not a table"):
        results.block("cut", tmp_path)
    (tmp_path / "theirs.csv").write_text("a,b\n1,2\n")  # someone's own file of that name
    with pytest.raises(VaeedofError, match="theirs.csv: not a recorded table"):
        results.record("theirs", "| a |\n|---|\n| 1 |\n", "made", "abc", folder=tmp_path)
    assert (tmp_path / "theirs.csv").read_text() == "a,b\n1,2\n"


def test_the_storage_table_is_measured_from_dvc_lock_and_scaled_per_scale(tmp_path, monkeypatch):
    import yaml

    from vaeedof.evaluation.readme import storage_block

    monkeypatch.chdir(ROOT)  # the scales: params.yaml and its overlays
    demo = yaml.safe_load((ROOT / "params.yaml").read_text())
    lock = {"schema": "2.0", "stages": {
        "scenes": {"params": {"params.run.yaml": {"scenes.train": demo["scenes"]["train"],
                                                   "scenes.test": demo["scenes"]["test"]}},
                   "outs": [{"path": "data/scenes", "md5": "x.dir", "size": 1000, "nfiles": 76}]},
        "render@train": {"params": {"params.run.yaml": {"render.crop": demo["render"]["crop"]}},
                         "outs": [{"path": "data/mattingmfif/train", "md5": "y.dir", "size": 2_000_000,
                                   "nfiles": 520}]},
        "evaluate": {"outs": [{"path": "reports/table.md", "md5": "z", "size": 300},
                              {"path": "reports/metrics.json", "md5": "w", "size": 700}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    table = storage_block(tmp_path / "dvc.lock")
    # Measured at the demo scale: its column is exact; the reports are one row of their own.
    assert "| `data/mattingmfif/train` | render@train | 520 | 2.0 MB |" in table
    assert "| `reports/` | evaluate, ... | 2 | 1.0 KB | 1.0 KB | 1.0 KB | 1.0 KB |" in table
    train = next(line for line in table.splitlines() if line.startswith("| `data/mattingmfif/train`"))
    ci, demo_cell, paper = train.strip("| ").split(" | ")[-3:]
    assert demo_cell == "2.0 MB" and ci.startswith("~") and paper.startswith("~")
    # The paper renders whole 4096 px frames of 10,000 scenes: 2 MB x (10000 x 4096^2) / (52 x 128^2).
    assert paper == "~393.8 GB" and "52 train and 24 test scenes" in table


def test_a_damaged_dvc_lock_is_one_line_for_the_storage_table(tmp_path):
    from vaeedof.evaluation.readme import storage_block

    for text in ("stages: [\n", "schema: '2.0'\n", "- a list\n"):
        (tmp_path / "dvc.lock").write_text(text)
        with pytest.raises(VaeedofError, match="dvc.lock: not a dvc.lock"):
            storage_block(tmp_path / "dvc.lock")
