"""The project's one exception for bad input data.

Every loader and validator raises :class:`DataError`; every command-line entry point turns
it into a message on standard error and exit code 2 (see :func:`analyses.common.run_cli`).
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data, located as precisely as we can: file, row and column.

    Parameters
    ----------
    message
        What is wrong, in words a data manager understands.
    file
        The file the data came from (``None`` for in-memory data).
    row
        1-based data row number as a spreadsheet shows it (header excluded), where it applies.
    column
        Column name, where it applies.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def located(self, file: str | Path) -> "DataError":
        """The same error with ``file`` filled in (for validators that work on frames)."""
        return DataError(self.message, file=file, row=self.row, column=self.column)
