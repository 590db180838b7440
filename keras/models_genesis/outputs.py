"""Output folders: checked before the work starts; a run replaces only what it wrote itself.

Every command that writes files follows one rule: it deletes or replaces only files of its own
layout (the names it writes), and only when asked (`overwrite=True`, `--overwrite`). These
helpers check an output folder up front (not after scanning 800 scans) and refuse to replace
files that exist.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

# The key, in the JSON file a command already writes in its output folder (a manifest, a run
# file), that names the command: the folder is then that command's own.
OWNER_KEY = "written_by"


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


def owner_stamp(command: str) -> dict:
    """The entry that marks a folder's manifest or run file as written by `command`."""
    return {OWNER_KEY: command}


def folder_owner(folder, markers: Sequence[str]) -> Optional[str]:
    """The command named (`OWNER_KEY`) in the first of `folder`'s marker files that names one.

    Args:
        folder: an output folder.
        markers: file names or glob patterns (relative to `folder`) of the JSON files a command
            writes there (e.g. `"manifest.json"`, `"bat_*.json"`).
    """
    for pattern in markers:
        for path in sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern))):
            try:
                with open(path, encoding="utf-8") as f:
                    values = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(values, dict) and isinstance(values.get(OWNER_KEY), str):
                return values[OWNER_KEY]
    return None


def check_not_nested(out, inputs: Sequence[Tuple[str, object]], *, name: str = "--out") -> None:
    """Refuse an output folder that is, lies inside, or holds one of the input folders.

    A prepared set written inside its download is read back as part of the download on the next
    run (a patient then appears twice); a download inside the output folder may be replaced.

    Args:
        out: the output folder.
        inputs: `(option, folder)` pairs, e.g. `[("--data", "LIDC")]`; None folders are skipped.
        name: the output option's name, for the message.

    Raises:
        ValueError: naming both folders.
    """
    out_full = os.path.realpath(os.fspath(out))
    for option, folder in inputs:
        if folder is None:
            continue
        other = os.path.realpath(os.fspath(folder))
        if out_full == other:
            relation = "is"
        elif out_full.startswith(other.rstrip(os.sep) + os.sep):
            relation = "lies inside"
        elif other.startswith(out_full.rstrip(os.sep) + os.sep):
            relation = "holds"
        else:
            continue
        raise ValueError(f"{name} {os.fspath(out)!r} {relation} {option} {os.fspath(folder)!r}: "
                         f"the output must differ from {option}, outside it and not above it. "
                         f"Received: {name} {os.fspath(out)}, {option} {os.fspath(folder)}.")


def claim_output_dir(path, command: str, *, markers: Sequence[str] = (),
                     legacy: Optional[Callable[[str], bool]] = None, overwrite: bool = False,
                     inputs: Sequence[Tuple[str, object]] = (), name: str = "--out") -> str:
    """Check, before any work, that `command` may write in the folder `path`; return it (absolute).

    The folder may be written when it does not exist, is empty, or is `command`'s own: one of its
    `markers` (the manifest or run file `command` writes there, carrying `owner_stamp(command)`)
    names `command`, or, for folders written before the stamp existed, `legacy(folder)` is true.
    A non-empty folder of anything else (a user's files, another command's run) is refused unless
    `overwrite`; even then the command replaces only files of its own layout. `inputs` are
    folders the output must not be, lie in or hold (`check_not_nested`).

    Raises:
        FileExistsError: a non-empty folder that is not `command`'s, without `overwrite`.
        ValueError, NotADirectoryError, PermissionError: see `check_not_nested` and
            `check_output_dir`.
    """
    full = check_output_dir(path, name=name)
    check_not_nested(path, inputs, name=name)
    if not os.path.isdir(full):
        return full
    entries = sorted(os.listdir(full))
    if not entries:
        return full
    owner = folder_owner(full, markers)
    if owner == command or (owner is None and legacy is not None and legacy(full)):
        return full
    if overwrite:
        return full
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    whose = (f"a `models-genesis {owner}` output" if owner is not None
             else f"not a `models-genesis {command}` output")
    raise FileExistsError(
        f"{name} {os.fspath(path)!r} is not empty and is {whose} (it holds {shown}). Choose a new "
        f"or empty folder, or pass --overwrite to write {command}'s files there (only those are "
        "replaced; other files are kept).")
