"""The README is short and true: its figures regenerate from committed files, it names no
machine-local path, and every link of it and of docs/ leads to a file of the repository."""

import re

import pytest

from vaeedof.cli import main

from .conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_short_and_its_figures_come_from_committed_files(capsys):
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    assert main(["readme", str(ROOT / "README.md"), "--check"]) == 0, capsys.readouterr().err


def test_readme_names_no_machine_local_path():
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"\.\./shared\S*|/work/\S*|/root/\S*|/tmp/\S*|RELEASE_RUN\S*", text)
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
