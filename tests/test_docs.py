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
