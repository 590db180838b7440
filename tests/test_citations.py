"""Citations resolve inside the repository.

Code, help texts, tests, benchmarks, notebooks and docs cite the paper or the repository's own
pages; the facts of the original release are cited as a section of `docs/release_reference.md` by
its title. No citation may point to a sheet outside the repository or to a tracker number.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE_REFERENCE = ROOT / "docs" / "release_reference.md"
SEARCHED = ("keras", "pytorch_compat", "tests", "benchmarks", "notebooks/src", "docs")
SUFFIXES = {".py", ".md", ".txt", ".cfg", ".toml", ".sh"}
# Written in two pieces so that this file does not match its own patterns.
UNRESOLVED = re.compile("REFER" + r"ENCE [0-9]" + "|" + r"[Ii]ss" + r"ue #?[0-9]")
CITATION = re.compile(r"release_reference\.md,\s*'([^']+)'(?:\s+and\s+'([^']+)')?")


def _files():
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "setup.py"]
    for folder in SEARCHED:
        files += [p for p in sorted((ROOT / folder).rglob("*"))
                  if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    return [p for p in files if p.is_file()]


def _joined(text):
    """The text with line breaks (and comment or quote markers after them) turned into spaces."""
    return re.sub(r"\s*\n\s*(?:#\s*)?(?:>\s*)?", " ", text)


def _sections():
    return {line[3:].strip() for line in RELEASE_REFERENCE.read_text(encoding="utf-8").splitlines()
            if line.startswith("## ")}


def test_unresolved_citations_are_found_by_the_pattern():
    assert UNRESOLVED.search("filtered for tissue (" + "REFER" + "ENCE 3)")
    assert UNRESOLVED.search("see " + "iss" + "ue 14")
    assert not UNRESOLVED.search("docs/release_" + "reference.md, 'Cube extraction'")


def test_no_citation_points_outside_the_repository():
    hits = []
    for path in _files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if UNRESOLVED.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "citations that no reader can follow:\n" + "\n".join(hits)


def test_release_reference_has_the_sections_the_code_follows():
    sections = _sections()
    for title in ("U-Net topology", "Weight file layout", "Transfer recipes and input sizes",
                  "The PyTorch release", "Pre-training data", "Cube extraction", "Transformations",
                  "Pre-training schedule", "Target tasks", "Headline numbers"):
        assert title in sections


def test_every_section_points_to_the_public_release():
    text = RELEASE_REFERENCE.read_text(encoding="utf-8")
    for block in text.split("\n## ")[1:]:
        title = block.splitlines()[0]
        assert "*Read it in:*" in block, f"section {title!r} does not say where to read it"


def test_cited_sections_exist():
    sections = _sections()
    problems = []
    for path in _files():
        cited = set()
        for match in CITATION.finditer(_joined(path.read_text(encoding="utf-8"))):
            cited.update(name for name in match.groups() if name)
        if cited - sections:
            problems.append(f"{path.relative_to(ROOT)}: {sorted(cited - sections)}")
    assert not problems, "cited sections that do not exist:\n" + "\n".join(problems)
    assert len(sections) >= 10


def test_the_cited_section_check_can_fail():
    # The file name in two pieces, so that this file's own text cites nothing.
    text = "see docs/release_" + "reference.md, 'Cube\n    # extraction' and 'No such section'"
    names = {n for m in CITATION.finditer(_joined(text)) for n in m.groups() if n}
    assert names == {"Cube extraction", "No such section"}
    assert names - _sections() == {"No such section"}
