"""Writing files without ever leaving a half-written one: a temporary name, then a rename."""

from __future__ import annotations

import json
import os


def write_json(path, values, **dump_kwargs) -> str:
    """Write `values` as indented JSON (UTF-8) to `path` atomically; return the path.

    `dump_kwargs` go to `json.dump` (e.g. `default=str` for values JSON cannot hold).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, sort_keys=True, **dump_kwargs)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_text(path, text: str) -> str:
    """Write `text` (UTF-8, as given) to `path` atomically; return the path."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_csv(path, table, *, tmp_suffix: str = ".tmp") -> str:
    """Write the DataFrame `table` (without its index) to `path` atomically; return the path.

    `tmp_suffix` names the temporary file (`path + tmp_suffix`), e.g. per process when several
    processes write in one folder.
    """
    path = os.fspath(path)
    tmp = path + tmp_suffix
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
