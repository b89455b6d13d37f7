"""The docs agree with the repository: the README's configuration table lists exactly what conf/ holds, and every
file path the README and docs/architecture.md name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "architecture.md"]


def _configuration_table() -> dict[str, set[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| group | options | what it sets |", 1)[1].split("\n\n", 1)[0]
    groups = {}
    for row in table.strip().splitlines()[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        groups[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return groups


def test_configuration_table_lists_every_group_and_option_of_conf():
    conf = ROOT / "conf"
    on_disk = {folder.name: {path.stem for path in folder.glob("*.yaml")}
               for folder in conf.iterdir() if folder.is_dir() and folder.name not in ("hydra", "__pycache__")}
    assert _configuration_table() == on_disk


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc):
    text = doc.read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w/.])((?:distill|conf|tests|benchmarks|recipes|docs)/[\w./-]*\w)", text))
    named = {name for name in named if "<" not in name}
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert missing == []
