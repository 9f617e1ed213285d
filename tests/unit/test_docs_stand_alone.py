"""A user's clone has no ../shared: nothing may cite it, and every cited section of the project's own reference docs
exists (windows-semantics.md, fat32-notes.md, fuse-notes.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = {"windows-semantics.md", "fat32-notes.md", "fuse-notes.md"}


def tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p.endswith((".py", ".md", ".toml", ".sh")) or
            p.startswith("scripts/")]


def test_nothing_cites_files_outside_the_clone() -> None:
    bad = re.compile(r"\.\./shared|reference/(vds|fat32|fuse)\.md|\bDESIGN(\.md)? §|\b(vds|fat32|fuse)\.md\b")
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in tracked() if p.is_file() and p.name != Path(__file__).name
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if bad.search(line)]
    assert hits == [], "\n".join(hits)


def test_every_cited_section_exists() -> None:
    sections: dict[str, set[str]] = {}
    for name in DOCS:
        text = (ROOT / "docs" / name).read_text()
        found = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", text, re.M)) | set(re.findall(r"\*\*§(\d+(?:\.\d+)?) ",
        text))
        sections[name] = found
    cite = re.compile(r"(windows-semantics|fat32-notes|fuse-notes)\.md((?:[ ,]+§\d+(?:\.\d+)?(?:–§\d+(?:\.\d+)?)?)+)")
    missing = []
    for p in tracked():
        if not p.is_file():
            continue
        for m in cite.finditer(p.read_text(errors="replace")):
            for sec in re.findall(r"§(\d+(?:\.\d+)?)", m.group(2)):
                if sec not in sections[m.group(1) + ".md"]:
                    missing.append(f"{p.relative_to(ROOT)}: {m.group(1)}.md §{sec}")
    assert missing == [], "\n".join(sorted(set(missing)))
