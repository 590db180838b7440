"""CSV tables of the data sets (LUNA16 `candidates.csv`, `candidates_V2.csv`, `annotations.csv`,
ECC candidates): read and checked before any row is used.

A table must have its columns, and its coordinate columns must hold finite numbers: a bad table
raises one `ValueError` naming the file, the column and the first bad row (1-based data row and
its line in the file, the header being line 1), e.g.
`candidates.csv: column coordX must hold numbers; row 3 (line 4) holds 'n/a'.`
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
NUMERIC = ("coordX", "coordY", "coordZ", "class", "diameter_mm")


def check_table(table, source, required: Sequence[str], numeric: Sequence[str] = NUMERIC, *,
                unique: Sequence[str] = ()):
    """Check columns and numbers of a DataFrame read from `source`; return it with numeric columns.

    Args:
        table: pandas DataFrame.
        source: the file (for the messages).
        required: columns that must be present.
        numeric: columns (those present) that must hold finite numbers in every row.
        unique: columns whose values together must not repeat (e.g. a nodule's series and
            centre in `annotations.csv`: a duplicated row would count the nodule twice).

    Returns:
        The table with the numeric columns converted to numbers (float, or int when integral).

    Raises:
        ValueError: a missing column, a non-numeric, empty or infinite value, or a repeated
            row of the `unique` columns.
    """
    # On first use: this module is on `models-genesis --help`'s import path (pandas: 0.7 s).
    import pandas as pd

    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{source} must have columns {list(required)}; missing {missing}. "
                         f"Received columns: {list(table.columns)}.")
    for column in [c for c in required if c not in numeric]:
        empty = table[column].isna().to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise ValueError(f"{source}: column {column} is empty in row {row + 1} "
                             f"(line {row + 2}).")
    table = table.copy()
    for column in [c for c in numeric if c in table.columns]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: column {column} must hold numbers; row {row + 1} "
                             f"(line {row + 2}) holds {table[column].iloc[row]!r}.")
        table[column] = values
    if unique:
        repeated = table.duplicated(subset=list(unique), keep=False).to_numpy()
        if repeated.any():
            first = int(np.flatnonzero(repeated)[0])
            key = table[list(unique)].iloc[first]
            same = (table[list(unique)] == key).all(axis=1).to_numpy()
            second = int(np.flatnonzero(same)[1])
            raise ValueError(f"{source}: rows {first + 1} and {second + 1} (lines {first + 2} and "
                             f"{second + 2}) repeat the same {', '.join(unique)}; a duplicated "
                             "row would count it twice. Remove one.")
    return table


def read_table(path, required: Sequence[str], numeric: Sequence[str] = NUMERIC, *,
               rename: Optional[Dict[str, str]] = None, unique: Sequence[str] = ()):
    """Read a CSV (ids as text), rename columns (e.g. ECC's `FileName` -> `seriesuid`), check it.

    Raises:
        FileNotFoundError: `path` is missing.
        ValueError: see `check_table`; or the file is not a readable CSV.
    """
    # On first use: this module is on `models-genesis --help`'s import path (pandas: 0.7 s).
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        table = pd.read_csv(path, dtype={"seriesuid": str, "FileName": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"Cannot read CSV {path}: {' '.join(str(exc).split())}") from None
    if rename:
        table = table.rename(columns={k: v for k, v in rename.items()
                                      if k in table.columns and v not in table.columns})
    return check_table(table, path, required, numeric, unique=unique)
