"""Reading an import file: its encoding, its header and its rows, as a spreadsheet numbers them."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from service.domain.errors import FieldError, Invalid
from service.domain.headcounts import CELLS as COLUMNS
from service.domain.headcounts import GROUP_CELLS as GROUP_COLUMNS

REQUIRED_COLUMNS = ("observed_at", "total")
_KNOWN = frozenset(COLUMNS)
# What a header may be: every column there is fits many times over (about 300
# characters). A header beyond is refused at once, whole, without reading it further.
MAX_HEADER_COLUMNS = 100
MAX_HEADER_CHARACTERS = 4096


class ImportFileError(Invalid):
    """The file as a whole cannot be read: not UTF-8, empty, or without the columns needed
    (`errors` name the columns missing or unknown)."""

    def __init__(
        self, detail: str, *, missing: Iterable[str] = (), unknown: Iterable[str] = ()
    ) -> None:
        errors = [FieldError(name, "Missing column.") for name in missing]
        errors += [FieldError(name, "Unknown column.") for name in unknown]
        super().__init__(detail, errors=errors)


class CsvSource:
    """A CSV file read twice: once to check it whole (encoding, header, row count) before
    anything is stored, then row by row. Rows are numbered as a spreadsheet shows them
    (the header is row 1); blank rows are skipped."""

    def __init__(self, opener: Callable[[], IO[bytes]], name: str) -> None:
        self._open = opener
        self.name = name
        self.header: list[str] = []
        self.delimiter = ","
        self.row_count = 0
        self.checked = False

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> CsvSource:
        return cls(lambda: io.BytesIO(data), name)

    @classmethod
    def from_path(cls, path: Any) -> CsvSource:
        return cls(lambda: open(path, "rb"), str(path))  # noqa: SIM115 - closed by the reader

    def check(self) -> CsvSource:
        """The whole file: its encoding, its header and every row readable as CSV."""
        self.check_header()
        # Counting only: every cell is read (and decoded) as for the import, no row built.
        self.row_count = sum(1 for _ in self._cells())
        self.checked = True
        return self

    def check_header(self) -> CsvSource:
        """What can be told at once: the file is not empty, not UTF-16, and its header
        names the columns needed (an upload is answered with this before it is queued)."""
        with self._open() as raw:
            first = raw.read(4)
            if not first:
                raise ImportFileError("The file is empty.")
            if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise ImportFileError(
                    "The file is UTF-16 text; save it as 'CSV UTF-8' (comma-separated)."
                )
        for _ in self._cells():
            break  # the header is read (and checked) before the first row
        return self

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        for number, cells in self._cells():  # reads the header first
            header = self.header
            if len(cells) > len(header):
                # Reported as a row error: the extra cells have no column.
                yield number, {"": f"{len(cells)} cells for {len(header)} columns"}
            else:
                yield number, dict(zip(header, cells, strict=False))

    def _cells(self) -> Iterator[tuple[int, list[str]]]:
        """Each row that is not blank, with its number; the header read into `header`."""
        with self._open() as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
            number = 0
            try:
                header_line = text.readline(MAX_HEADER_CHARACTERS + 1)
                if len(header_line) > MAX_HEADER_CHARACTERS:
                    raise ImportFileError(
                        f"The header row is longer than {MAX_HEADER_CHARACTERS:,} characters: "
                        "this is not a header of this import. The columns are: "
                        + ", ".join(COLUMNS)
                        + "."
                    )
                if not header_line.strip():
                    raise ImportFileError("The file has no header row.")
                self.delimiter = ";" if "," not in header_line and ";" in header_line else ","
                reader = csv.reader(
                    itertools.chain((header_line,), text), delimiter=self.delimiter, strict=True
                )
                self.header = _check_header(next(reader))
                number = 1
                for cells in reader:
                    number += 1
                    if "".join(cells).strip():
                        yield number, cells
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"The file is not UTF-8 text (near row {number + 1}: byte "
                    f"{exc.object[exc.start : exc.start + 1]!r}); save it as 'CSV UTF-8'."
                ) from None
            except csv.Error as exc:
                raise ImportFileError(f"Row {number + 1} cannot be read as CSV: {exc}.") from None


def _check_header(cells: list[str]) -> list[str]:
    """The header's column names, or why it does not fit (in one pass over it)."""
    if len(cells) > MAX_HEADER_COLUMNS:
        raise ImportFileError(
            f"The header row has {len(cells):,} columns; at most {MAX_HEADER_COLUMNS} "
            "columns are read. The columns are: " + ", ".join(COLUMNS) + "."
        )
    header = [cell.strip().lower() for cell in cells]
    unknown = [name for name in header if name and name not in _KNOWN]
    named = Counter(header)
    duplicates = sorted(name for name, times in named.items() if name and times > 1)
    missing = [name for name in REQUIRED_COLUMNS if name not in named]
    if not any(name in named for name in GROUP_COLUMNS):
        missing.append("group_id or group_label")
    if "group_label" in named and "site_id" not in named:
        missing.append("site_id")
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(unknown))
        raise ImportFileError(
            "The header row does not fit: "
            + "; ".join(parts)
            + ". The columns are: "
            + ", ".join(COLUMNS)
            + ".",
            missing=missing,
            unknown=unknown,
        )
    if duplicates:
        raise ImportFileError("Columns named twice: " + ", ".join(duplicates) + ".")
    if "" in named:
        raise ImportFileError("Every column needs a name in the header row.")
    return header
