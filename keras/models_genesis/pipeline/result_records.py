"""Measured results as records: what was measured, when, on which machine, by which command.

Every measured number of the project has one home: a record in a JSON file under
`benchmarks/results/`, which `benchmarks/results_page.py` renders into `docs/results.md`. The
benchmarks (`--record FILE`) and the demo (`results.json` in its output folder) write records in
this format, so a new measurement is added, not copied by hand into prose.

A results file is `{"title": str, "about": str, "records": [record, ...]}`. A record is a dict:

* `name`, `date` (UTC, `YYYY-MM-DD` or with a time), `machine`, `command`: required strings;
* `numbers`: optional `{label: value}` (value a number or a short string, e.g. "11 min 13 s");
* `table`: optional `{"columns": [...], "rows": [[...], ...]}`, every row as long as the columns;
* `notes`: optional prose that says what the numbers mean (no number that is not measured).

Example:
    >>> record = new_record("transforms", "python benchmarks/transforms.py",
    ...                     numbers={"ratio": 22.0}, date="2026-11-26", machine="2 CPU cores")
    >>> add_record("benchmarks/results/transforms.json", record)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from typing import Mapping, Optional, Sequence

from models_genesis.atomic import write_json

REQUIRED = ("name", "date", "machine", "command")
OPTIONAL = ("numbers", "table", "notes", "commit")


def machine_description() -> str:
    """The machine this process runs on, in words (OS, architecture, CPU cores, Python)."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}")


def command_line() -> str:
    """The command that started this process, as a user would type it."""
    return " ".join(["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def check_record(record: Mapping) -> dict:
    """Return `record` as a dict after checking its fields.

    Raises:
        ValueError: a required field is missing or empty, a field is unknown, or a table row has
            another length than the columns.
    """
    missing = [k for k in REQUIRED if not str(record.get(k, "")).strip()]
    if missing:
        raise ValueError(f"A result record needs {', '.join(REQUIRED)}. Missing: {missing}. "
                         f"Received: name={record.get('name')!r}.")
    unknown = sorted(set(record) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"Unknown fields in result record {record['name']!r}: {unknown}. "
                         f"Known: {list(REQUIRED + OPTIONAL)}.")
    table = record.get("table")
    if table is not None:
        columns = list(table.get("columns", []))
        bad = [row for row in table.get("rows", []) if len(row) != len(columns)]
        if not columns or bad:
            raise ValueError(f"Table of result record {record['name']!r}: every row must have "
                             f"the {len(columns)} columns {columns}. Received rows: {bad}.")
    return dict(record)


def new_record(name: str, command: str, *, numbers: Optional[Mapping] = None,
               table: Optional[Mapping[str, Sequence]] = None, notes: Optional[str] = None,
               date: Optional[str] = None, machine: Optional[str] = None) -> dict:
    """A checked record; `date` defaults to now (UTC) and `machine` to this machine."""
    record = {"name": name,
              "date": date or datetime.datetime.now(datetime.timezone.utc).strftime(
                  "%Y-%m-%d %H:%M UTC"),
              "machine": machine or machine_description(), "command": command}
    if numbers:
        record["numbers"] = dict(numbers)
    if table:
        record["table"] = {"columns": list(table["columns"]),
                           "rows": [list(row) for row in table["rows"]]}
    if notes:
        record["notes"] = notes
    return check_record(record)


def read_results(path) -> dict:
    """The results file at `path`, its records checked.

    Raises:
        ValueError: the file is not a results file (no `title` and `records`).
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "title" not in data or "records" not in data:
        raise ValueError(f"{path}: a results file holds {{'title', 'about', 'records'}}. "
                         f"Received keys: {sorted(data) if isinstance(data, dict) else type(data)}.")
    data["records"] = [check_record(r) for r in data["records"]]
    return data


def add_record(path, record: Mapping, *, title: Optional[str] = None, about: str = "") -> str:
    """Append `record` to the results file `path` (created with `title` when absent); atomic."""
    path = os.fspath(path)
    if os.path.isfile(path):
        data = read_results(path)
    else:
        data = {"title": title or os.path.splitext(os.path.basename(path))[0], "about": about,
                "records": []}
    data["records"].append(check_record(record))
    return write_json(path, data, ensure_ascii=False)


def add_record_option(parser, example: str) -> None:
    """Give a benchmark's argument parser the `--record RESULTS_FILE` option."""
    parser.add_argument(
        "--record", metavar="RESULTS_FILE", default=None,
        help=f"also append this run's numbers, with today's date, this machine and this command "
             f"line, as a record to RESULTS_FILE (e.g. {example}); then run "
             f"`python benchmarks/results_page.py` to update docs/results.md. Default: print only")


def record_run(path, name: str, *, numbers: Optional[Mapping] = None,
               table: Optional[Mapping[str, Sequence]] = None, notes: Optional[str] = None,
               title: Optional[str] = None) -> Optional[str]:
    """Append a record of this process's run to `path` (nothing when `path` is None)."""
    if path is None:
        return None
    record = new_record(name, command_line(), numbers=numbers, table=table, notes=notes)
    written = add_record(path, record, title=title)
    print(f"recorded in {written}")
    return written
