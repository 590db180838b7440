"""Output folders: checked before the work starts; a run replaces only what it wrote itself.

Every command that writes files follows one rule: it deletes or replaces only files of its own
layout (the names it writes), and only when asked (`overwrite=True`, `--overwrite`). These
helpers check an output folder up front (not after scanning 800 scans) and refuse to replace
files that exist.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterable, List


def check_output_dir(path, *, name: str = "out_dir") -> str:
    """Check that `path` is, or can be created as, a writable folder; return its absolute path.

    Nothing is created. Raises before any work is done when the folder cannot be written.

    Args:
        path: the output folder.
        name: the argument's name, for the message (e.g. `"out_dir"` or `"--out"`).

    Raises:
        ValueError: `path` is empty.
        NotADirectoryError: `path`, or a folder above it, is a file.
        PermissionError: the folder (or the nearest existing folder above it) is not writable.
    """
    if path is None or not os.fspath(path):
        raise ValueError(f"`{name}` must name an output folder. Received: {name}={path!r}.")
    full = os.path.abspath(os.fspath(path))
    probe = full
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        what = "is a file" if probe == full else f"lies under the file {probe!r}"
        raise NotADirectoryError(f"`{name}` must be a folder, but {full!r} {what}. "
                                 f"Received: {name}={os.fspath(path)!r}.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"`{name}` is not writable: no write permission on {probe!r}. "
                              f"Received: {name}={os.fspath(path)!r}.")
    return full


def existing(paths: Iterable) -> List[str]:
    """The paths (files or folders) among `paths` that exist."""
    return [os.fspath(p) for p in paths if os.path.lexists(os.fspath(p))]


def refuse_to_replace(paths: Iterable, *, where, what: str = "files") -> None:
    """Raise `FileExistsError` listing the paths among `paths` that exist.

    Args:
        paths: the files and folders a run would write.
        where: the output folder, for the message.
        what: what they are (e.g. "phantom files"), for the message.
    """
    found = existing(paths)
    if found:
        shown = ", ".join(os.path.relpath(p, os.fspath(where)) for p in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise FileExistsError(
            f"{os.fspath(where)!r} already holds {len(found)} of the {what} this command writes "
            f"({shown}{more}). Pass overwrite=True (--overwrite) to replace them, or choose "
            "another output folder.")


def remove_outputs(paths: Iterable) -> List[str]:
    """Delete the files and folders among `paths` (a run's own layout); return those removed."""
    removed = []
    for path in existing(paths):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        removed.append(path)
    return removed
