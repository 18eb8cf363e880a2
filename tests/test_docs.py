"""The user pages stay true to the code: the option reference is the parser's, the experiment
files are valid configurations, links resolve, and the pages stay short and portable."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import options

ROOT = Path(__file__).resolve().parents[1]
USER_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_option_reference_is_generated_from_the_parser():
    assert (ROOT / "docs" / "OPTIONS.md").read_text() == options.option_reference(), \
        "docs/OPTIONS.md is stale: python options.py reference > docs/OPTIONS.md"


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.name)
def test_experiment_files_are_valid_configurations(path):
    cfg, given = options.parse_args(["--config", str(path)])
    options.check_args(cfg)
    assert given - {"config"} and cfg.config == str(path)


def test_pages_are_short_and_name_no_machine_path():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert len((ROOT / "trainer.py").read_text().splitlines()) <= 400
    for page in USER_PAGES:
        text = page.read_text()
        assert "../shared" not in text and "/work/" not in text, page


def test_relative_links_resolve():
    for page in [*USER_PAGES, ROOT / "docs" / "lab" / "README.md"]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
