"""Content hashes of input data, recorded in every output's provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def hash_frame(frame: pd.DataFrame) -> str:
    """Content hash of a data frame (values, index and column names)."""
    values = pd.util.hash_pandas_object(frame, index=True).values
    h = hashlib.sha256(values.tobytes())
    h.update("\x1f".join(map(str, frame.columns)).encode())
    return "sha256:" + h.hexdigest()
