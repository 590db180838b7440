"""Every `models-genesis ...` command line in the docs parses with the real argument parser.

A renamed or removed flag then breaks this test, not a user copying the command. The command
lines are taken from the fenced code blocks of README.md and docs/*.md (backslash continuations
joined, shell comments dropped, `$VAR` replaced by a method name); they are parsed, never run.
"""

import glob
import os
import re
import shlex

import pytest

from models_genesis.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def doc_commands(path):
    """`(line number, argv)` of every `models-genesis` command in `path`'s fenced code blocks."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out, fenced, k = [], False, 0
    while k < len(lines):
        line = lines[k]
        if line.lstrip().startswith("```"):
            fenced = not fenced
            k += 1
            continue
        text = re.sub(r"^\s*(\$ |> )?", "", line)
        if fenced and text.startswith("models-genesis ") and ": error:" not in text:
            start = k + 1
            while text.rstrip().endswith("\\") and k + 1 < len(lines):
                k += 1
                text = text.rstrip()[:-1] + " " + lines[k].strip()
            text = re.sub(r"\s+#.*$", "", text)
            text = re.sub(r"\$\{?\w+\}?", "genesis", text)
            out.append((start, shlex.split(text)[1:]))
        k += 1
    return out


CASES = [(os.path.relpath(p, ROOT), n, argv) for p in DOCS for n, argv in doc_commands(p)]


def test_the_docs_hold_commands():
    assert len(CASES) >= 20
    assert {c[0] for c in CASES} >= {"README.md", os.path.join("docs", "experiments.md")}


@pytest.mark.parametrize("path,line,argv", CASES,
                         ids=[f"{p}:{n}" for p, n, _ in CASES])
def test_doc_command_parses(path, line, argv):
    if "--help" in argv or "-h" in argv:
        pytest.skip("--help exits by design")
    if "..." in argv:
        pytest.skip("a placeholder (`...`), not a whole command")
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{path}:{line}: `models-genesis {' '.join(argv)}` does not parse "
                    f"(exit {exc.code})")
