"""Build the notebooks from their sources and execute them: the one script behind `notebooks/`.

Each notebook is written as a Python file in "percent" format in `notebooks/src/NN_name.py`:
`# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines lose the leading `# `),
and `# %% include: _part.py` pastes the cells of a shared part (e.g. the setup cell) in place.
This script turns a source into a notebook with `nbformat`, executes it top to bottom with
`nbclient` in a kernel running this interpreter, and writes `notebooks/NN_name.ipynb` atomically
(temporary name, then rename), so a reader on GitHub sees the outputs of a phantom run.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python notebooks/build_notebooks.py              # build and execute every notebook
    .venv/bin/python notebooks/build_notebooks.py 03_ncc       # only some (names or prefixes)
    .venv/bin/python notebooks/build_notebooks.py --check      # fail if one is stale or unexecuted
    .venv/bin/python notebooks/build_notebooks.py --small --out /tmp/nb   # quick test-sized run

The notebooks run with the repository root as working directory and keep their work (phantoms,
the shared demo pre-training, runs, figures) in `runs/notebooks/` (git-ignored); a second build
reuses the cached pre-training. `--small` sets `MODELS_GENESIS_NOTEBOOK_SMALL=1`, the parameter
every notebook reads at the top to shrink data, epochs and models (the test suite uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

NOTEBOOK_DIR = Path(__file__).resolve().parent
SOURCE_DIR = NOTEBOOK_DIR / "src"
REPO_ROOT = NOTEBOOK_DIR.parent
SMALL_ENV = "MODELS_GENESIS_NOTEBOOK_SMALL"
WORK_ENV = "MODELS_GENESIS_NOTEBOOK_WORK"
KERNEL_NAME = "models-genesis-notebooks"
_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")

Cell = Tuple[str, str]  # (cell_type, source)


def notebook_names() -> List[str]:
    """Names (`NN_name`) of every notebook source in `notebooks/src/`, in order."""
    return sorted(p.stem for p in SOURCE_DIR.glob("*.py") if _NAME.match(p.stem))


def select_names(wanted: Sequence[str]) -> List[str]:
    """Resolve names or prefixes (`03`, `03_ncc`) to notebook names; raise on an unknown one."""
    names = notebook_names()
    if not wanted:
        return names
    chosen = []
    for item in wanted:
        item = Path(item).stem
        hits = [n for n in names if n == item or n.startswith(item)]
        if not hits:
            raise ValueError(f"No notebook source matches {item!r}. Valid names: {names}.")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def parse_percent(text: str, source: str = "<string>", *, _depth: int = 0) -> List[Cell]:
    """Split a percent-format source into `(cell_type, source)` cells.

    Args:
        text: the file's text.
        source: its name, for error messages.

    Returns:
        Cells in order; leading and trailing blank lines of each cell are dropped, and so are
        empty cells.

    Raises:
        ValueError: an unknown cell marker, or includes nested too deep.
        FileNotFoundError: an included part that does not exist.
    """
    if _depth > 3:
        raise ValueError(f"{source}: includes nested more than 3 deep.")
    cells: List[Cell] = []
    kind, lines = "code", []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", line) for line in body.split("\n"))
        if body.strip():
            cells.append((kind, body))

    for number, line in enumerate(text.split("\n"), start=1):
        match = _MARKER.match(line)
        if not match:
            lines.append(line)
            continue
        flush()
        rest, lines = match.group("rest").strip(), []
        if rest.startswith("include:"):
            part = SOURCE_DIR / rest[len("include:"):].strip()
            if not part.is_file():
                raise FileNotFoundError(f"{source}:{number}: included part {part} not found.")
            cells += parse_percent(part.read_text(encoding="utf-8"), str(part), _depth=_depth + 1)
            kind = "code"
        elif rest in ("", "[code]") or rest.startswith("#"):
            kind = "code"
        elif rest == "[markdown]":
            kind = "markdown"
        else:
            raise ValueError(f"{source}:{number}: unknown cell marker {line!r}; expected '# %%', "
                             "'# %% [markdown]' or '# %% include: FILE'.")
    flush()
    return cells


def build_notebook(name: str):
    """The unexecuted notebook of source `name` (an `nbformat` v4 node)."""
    import nbformat

    path = SOURCE_DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"Notebook source not found: {path}. Valid names: {notebook_names()}.")
    nb = nbformat.v4.new_notebook()
    for kind, body in parse_percent(path.read_text(encoding="utf-8"), str(path)):
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(body))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"  # stable ids: rebuilding changes nothing spurious
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["models_genesis"] = {"source": f"src/{name}.py",
                                     "built_by": "notebooks/build_notebooks.py"}
    return nb


def cell_sources(nb) -> List[Cell]:
    """`(cell_type, source)` of every cell: what must agree between a source and its notebook."""
    return [(c["cell_type"], "".join(c["source"])) for c in nb.cells]


def install_kernel(directory) -> str:
    """Write a kernel spec that runs *this* interpreter into `directory/kernels/`; return its name.

    Point `JUPYTER_PATH` at `directory` so `nbclient` finds it before any other `python3` spec.
    """
    spec_dir = Path(directory) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    # capture_fd_output=False: C-level logs (TensorFlow's absl lines) stay out of the outputs.
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.capture_fd_output=False"],
            "display_name": "Python (models_genesis notebooks)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return KERNEL_NAME


def execute_notebook(nb, *, cwd, small: bool = False, work_dir=None, timeout: int = 1800,
                     extra_env: Optional[Dict[str, str]] = None):
    """Execute `nb` in place, top to bottom, in a fresh kernel of this interpreter.

    Args:
        nb: notebook node (e.g. from `build_notebook`).
        cwd: working directory of the kernel.
        small: set `MODELS_GENESIS_NOTEBOOK_SMALL=1` (test-sized run).
        work_dir: the notebooks' work folder (`MODELS_GENESIS_NOTEBOOK_WORK`); None keeps the
            notebooks' default (`runs/notebooks`, or `runs/notebooks_small` when small).
        timeout: seconds allowed per cell.
        extra_env: more environment variables for the kernel.

    Returns:
        `nb`, with outputs.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the error names the cell).
    """
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="mg_kernel_") as spec_root:
        kernel = install_kernel(spec_root)
        env = {**os.environ, "JUPYTER_PATH": os.pathsep.join(
                   [spec_root] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]),
               "TF_CPP_MIN_LOG_LEVEL": "2", SMALL_ENV: "1" if small else "0", **(extra_env or {})}
        if work_dir is not None:
            env[WORK_ENV] = os.fspath(work_dir)
        saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # the kernel-spec lookup happens here
        try:
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, allow_errors=False,
                                    record_timing=False, coalesce_streams=True,
                                    resources={"metadata": {"path": os.fspath(cwd)}})
            client.execute(env=env)
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved
    return nb


def write_notebook(nb, path) -> str:
    """Write `nb` to `path` atomically (temporary name in the same folder, then rename)."""
    import nbformat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, path)
    return os.fspath(path)


def check_notebooks(names: Sequence[str], directory=NOTEBOOK_DIR) -> List[str]:
    """Problems of the committed notebooks: missing, stale (sources differ) or unexecuted."""
    import nbformat

    problems = []
    for name in names:
        path = Path(directory) / f"{name}.ipynb"
        if not path.is_file():
            problems.append(f"{path}: missing; run notebooks/build_notebooks.py {name}")
            continue
        committed = nbformat.read(path, as_version=4)
        if cell_sources(committed) != cell_sources(build_notebook(name)):
            problems.append(f"{path}: stale, its cells differ from src/{name}.py; rebuild it")
        code = [c for c in committed.cells if c["cell_type"] == "code"]
        if not code or any(c.get("execution_count") is None for c in code):
            problems.append(f"{path}: not executed top to bottom (a code cell has no execution "
                            "count); rebuild it")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to build (names or prefixes); default all")
    parser.add_argument("--check", action="store_true",
                        help="only check that the committed notebooks are current and executed")
    parser.add_argument("--small", action="store_true",
                        help=f"test-sized run ({SMALL_ENV}=1); needs --out")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks unexecuted")
    parser.add_argument("--out", default=None, help="output folder (default: notebooks/)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (1800)")
    args = parser.parse_args(argv)
    try:
        names = select_names(args.names)
    except ValueError as exc:
        parser.error(str(exc))
    if args.check:
        problems = check_notebooks(names)
        print("\n".join(problems) if problems else f"{len(names)} notebooks are current.")
        return 1 if problems else 0
    out = Path(args.out) if args.out else NOTEBOOK_DIR
    if args.small and out.resolve() == NOTEBOOK_DIR:
        parser.error("--small notebooks are not the committed ones; give --out FOLDER.")
    for name in names:
        nb = build_notebook(name)
        start = time.perf_counter()
        if not args.no_execute:
            print(f"executing {name} ...", flush=True)
            execute_notebook(nb, cwd=REPO_ROOT, small=args.small, timeout=args.timeout)
        path = write_notebook(nb, out / f"{name}.ipynb")
        size = os.path.getsize(path) / 1e6
        print(f"{name}: {time.perf_counter() - start:.0f} s, {size:.2f} MB -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
