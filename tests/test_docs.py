"""The documentation works: the site builds in strict mode, the README keeps the two set-up
commands and stays short, and every link, command, benchmark and file named in the Markdown
documents exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
TOP = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "benchmarks" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMAND = re.compile(r"python -m (analyses\.[a-z_0-9]+)")
SCRIPT = re.compile(r"python (benchmarks/[a-z_0-9]+\.py)")


def test_site_builds_in_strict_mode(tmp_path):
    """A broken link or anchor, or a page left out of the navigation, fails (mkdocs.yml)."""
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    run = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "kinship" / "index.html").exists()


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in DOCS if p.name not in nav]
    assert not missing, f"pages missing from mkdocs.yml nav: {missing}"


def test_readme_keeps_the_two_commands_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    assert "uv run python -m analyses.kinship" in readme
    assert re.search(r"^uv run pytest\b", readme, re.M), "the README's test command"
    assert len(readme.splitlines()) <= 220, "the README is a front page (about 200 lines), the manual is docs/"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "uv run pytest" in ci, "CI runs the README's test command"


@pytest.mark.parametrize("doc", TOP, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_outside_the_site_resolve(doc):
    """Links in README.md, ARCHITECTURE.md and benchmarks/README.md (not built by MkDocs)
    point at files that exist, and anchors at headings that exist."""
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}
            if anchor not in slugs:
                broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def _all_markdown() -> list[Path]:
    return [*TOP, *DOCS]


def test_every_command_named_exists_and_has_a_page():
    named = {m for doc in _all_markdown() for m in COMMAND.findall(doc.read_text())}
    missing = [m for m in named if not ((ROOT / Path(*m.split("."))).with_suffix(".py").exists()
                                        or (ROOT / Path(*m.split(".")) / "__main__.py").exists())]
    assert not missing, f"commands named in the docs that do not exist: {missing}"
    readme = (ROOT / "README.md").read_text()
    for module in sorted((ROOT / "analyses").glob("*.py")):
        if "def main(" in module.read_text() and "__name__ == \"__main__\"" in module.read_text():
            name = f"analyses.{module.stem}"
            assert f"`{name}`" in readme, f"{name} is missing from the README's table of commands"


def test_every_benchmark_named_exists_and_every_benchmark_is_described():
    named = {s for doc in _all_markdown() for s in SCRIPT.findall(doc.read_text())}
    missing = [s for s in named if not (ROOT / s).exists()]
    assert not missing, f"benchmarks named in the docs that do not exist: {missing}"
    bench = (ROOT / "benchmarks" / "README.md").read_text()
    undocumented = [p.name for p in sorted((ROOT / "benchmarks").glob("*.py")) if p.name not in bench]
    assert not undocumented, f"benchmarks without a section in benchmarks/README.md: {undocumented}"
