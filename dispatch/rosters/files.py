"""Uploaded files and spreadsheets: read untrusted uploads safely, write CSV and XLSX.

Uploads are read from the raw request body with a hard size cap, and their format is decided
by their content, never by their name or declared type. Every failure is a 4xx naming the
problem; nothing in an upload can make the server answer 500.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, ClassVar
from urllib.parse import quote

from fastapi import Request, Response
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._reader import FORMULA_TAG, VALUE_TAG, WorkSheetParser
from openpyxl.worksheet.worksheet import Worksheet

from dispatch.errors import DomainError, InvalidInput

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"
# Rows with a value (a title and the header among them); blank ones are not counted.
MAX_ROWS = 20_000
# Rows read at all, blank ones too. A ledger's template is often formatted (borders drawn) far
# below its last member, down to row 65 536 when it began as an .xls: its blank rows keep no
# room, but each costs the time to read it (some 30 us a row of 8 cells).
MAX_SCANNED_ROWS = 100_000
MAX_COLUMNS = 64
# What a workbook may unpack to. 20 000 rows of a roster are some 15 MB of sheet XML; a 5 MiB
# upload of repeated text could unpack to gigabytes (deflate packs it ~1000:1), all of it held
# by openpyxl in memory.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Files people pick by mistake whose first bytes happen to decode as GB18030 text: without
# these they were read as a CSV and refused for a missing header row.
_OTHER_MAGIC = {
    b"%PDF-": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}


class TooLarge(DomainError):
    status = 413
    code = "too_large"


class UnsupportedFile(DomainError):
    status = 415
    code = "unsupported_file"


@dataclass(frozen=True)
class Problem:
    """One reason a file was refused: where (row number as the user sees it, column) and why."""

    row: int | None
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


class FileRejected(InvalidInput):
    """A file with bad rows: every problem is listed and nothing of the file was written."""

    code: ClassVar[str] = "file_rejected"

    def __init__(self, detail: str, problems: Sequence[Problem]) -> None:
        super().__init__(detail)
        self.problems = list(problems)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "problems": [p.as_dict() for p in self.problems]}


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is {int(declared)} bytes; the limit is {limit}", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload is larger than the limit of {limit} bytes", field="body")
        chunks.append(chunk)
    if size == 0:
        raise InvalidInput("the upload is empty", field="body")
    return b"".join(chunks)


@dataclass(frozen=True)
class Row:
    """A row with a value: its number as the user sees it (the sheet's row number, the CSV's
    record number), its cells as trimmed text, and which of them (from 0) a workbook holds as
    numbers: a number has lost what Excel does not keep of it (all digits after the 15th)."""

    line: int
    cells: list[str]
    numbers: set[int] = field(default_factory=set)
    # Cells (from 0) holding a formula without a saved value: a script wrote the formula and
    # no spreadsheet has worked it out (Excel and WPS save the value with it), so the cell
    # reads blank.
    formulas: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Merge:
    """A merged range of cells (合并单元格), whose value the file holds in its top-left cell
    alone: its first and last row numbers, and its first and last columns (from 0)."""

    top: int
    bottom: int
    left: int
    right: int


@dataclass(frozen=True)
class Table:
    """The rows with a value of the sheet read (XLSX: the first the caller wants, else the
    first) or of the file (CSV), in order, and the sheet's merged ranges."""

    format: str
    rows: list[Row]
    merges: tuple[Merge, ...] = ()

    def filled(self, below: int) -> list[Row]:
        """The rows below row ``below`` (the header), each cell a merged range covers holding
        the range's value. Ledgers write a unit's 单元, or a team's name, once over its rows;
        read as the file has it, every member but the first would have none.

        A range starting at ``below`` or above is the title's or the header's layout, and a
        row with nothing of its own stays out (a range drawn past a unit's last member)."""
        rows = [
            Row(r.line, list(r.cells), set(r.numbers), set(r.formulas))
            for r in self.rows
            if r.line > below
        ]
        lines = [r.line for r in rows]
        by_line = {r.line: r for r in rows}
        budget = MAX_ROWS * MAX_COLUMNS
        for merge in self.merges:
            top = by_line.get(merge.top)
            if merge.top <= below or top is None or merge.left >= len(top.cells):
                continue
            value, number = top.cells[merge.left], merge.left in top.numbers
            start, end = bisect_left(lines, merge.top), bisect_right(lines, merge.bottom)
            for row in rows[start:end]:
                for column in range(merge.left, min(merge.right, MAX_COLUMNS - 1) + 1):
                    # Ranges of a sheet do not overlap, so their cells are at most the
                    # table's; a file whose ranges do would otherwise take minutes.
                    budget -= 1
                    if budget < 0:
                        raise InvalidInput(
                            "the sheet's merged cells overlap; unmerge them", field="body"
                        )
                    if column >= len(row.cells):
                        row.cells.extend([""] * (column + 1 - len(row.cells)))
                    if not row.cells[column]:
                        row.cells[column] = value
                        if number:
                            row.numbers.add(column)
        return rows


class _Rows:
    """The rows kept, counted against MAX_ROWS, and every row read against MAX_SCANNED_ROWS."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.kept: list[Row] = []
        self.scanned = 0

    def add(
        self,
        line: int,
        cells: list[str],
        numbers: set[int] | None = None,
        formulas: set[int] | None = None,
    ) -> None:
        self.scanned += 1
        if self.scanned > MAX_SCANNED_ROWS:
            raise InvalidInput(
                f"the {self.what} has more than {MAX_SCANNED_ROWS} rows, blank ones included; "
                "delete the rows below the roster",
                field="body",
            )
        if not any(cells) and not formulas:
            return
        if len(self.kept) >= MAX_ROWS:
            raise InvalidInput(
                f"the {self.what} has more than {MAX_ROWS} rows with a value", field="body"
            )
        self.kept.append(Row(line, cells, numbers or set(), formulas or set()))


# Whether the rows of a sheet are what the caller reads (a roster: they have its header).
Wanted = Callable[[list[Row]], bool]


def read_table(data: bytes, wanted: Wanted | None = None) -> Table:
    """The file's table: a CSV's rows, or those of a workbook's first sheet that is
    ``wanted`` (a template's sheet of instructions before the roster is passed over), those in
    view before hidden ones, else of its first sheet in view."""
    if data.startswith(_ZIP_MAGIC):
        return Table("xlsx", *_read_xlsx(data, wanted))
    if data.startswith(_OLE_MAGIC):
        raise UnsupportedFile(
            "this is an Excel 97-2003 .xls file; save it as .xlsx (Excel workbook) or .csv"
        )
    for magic, what in _OTHER_MAGIC.items():
        if data.startswith(magic):
            raise UnsupportedFile(f"this is {what}; upload the .xlsx workbook or a .csv file")
    return Table("csv", _read_csv(data))


def file_facts(data: bytes) -> dict[str, Any]:
    """What the audit trail keeps of an uploaded file: its size and digest, which name it."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# Office files that are zip archives too, told apart by a part each holds: a Word document
# renamed .xlsx, or picked by mistake, is named as such rather than as a broken workbook.
_ZIPPED_OTHERS = {
    "word/document.xml": "a Word document (.docx)",
    "ppt/presentation.xml": "a PowerPoint presentation (.pptx)",
}
_ODF_MIMETYPE = "application/vnd.oasis.opendocument."


def _zipped_other(archive: zipfile.ZipFile) -> str | None:
    """What the archive is when it is a known office file other than a workbook, else None."""
    names = set(archive.namelist())
    if "xl/workbook.xml" in names:
        return None
    for part, what in _ZIPPED_OTHERS.items():
        if part in names:
            return what
    if "mimetype" in names and archive.getinfo("mimetype").file_size < 100:
        mimetype = archive.read("mimetype").decode("ascii", "replace")
        if mimetype.startswith(_ODF_MIMETYPE + "spreadsheet"):
            return "an OpenDocument spreadsheet (.ods)"
        if mimetype.startswith(_ODF_MIMETYPE):
            return "an OpenDocument file (.odt, .odp)"
    return None


def _check_unpacked_size(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            other = _zipped_other(archive)
            # Declared sizes bound what the archive yields: zipfile stops a member at its size.
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
        raise UnsupportedFile(
            "the file looks like a zip archive but is not a readable .xlsx"
        ) from None
    if other is not None:
        raise UnsupportedFile(
            f"this is {other}, not an .xlsx workbook; upload the roster's .xlsx workbook "
            "or save the roster as .xlsx or .csv"
        )
    if unpacked > MAX_UNPACKED_BYTES:
        raise TooLarge(
            f"the workbook unpacks to {unpacked} bytes, more than {MAX_UNPACKED_BYTES}; "
            "save it without unused sheets or as .csv",
            field="body",
        )


def _read_xlsx(data: bytes, wanted: Wanted | None) -> tuple[list[Row], tuple[Merge, ...]]:
    _check_unpacked_size(data)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile):
        raise UnsupportedFile(
            "the file looks like a zip archive but is not a readable .xlsx"
        ) from None
    except Exception:
        # openpyxl raises a zoo of types (KeyError, ValueError, InvalidFileException, XML
        # errors) for archives that are not workbooks; all mean the same to the user, and
        # none of their names means anything to an office.
        raise UnsupportedFile(
            "the file is a zip archive but not a readable .xlsx workbook; "
            "open it in Excel or WPS and save it as .xlsx or .csv"
        ) from None
    try:
        first: tuple[list[Row], tuple[Merge, ...]] | None = None
        # The sheets in view first: a hidden one (last year's roster kept out of sight) is
        # not what the user sees and means, unless no sheet in view is wanted.
        sheets = sorted(workbook.worksheets, key=lambda sheet: sheet.sheet_state != "visible")
        for sheet in sheets:
            read = _sheet_rows(workbook, sheet)
            if wanted is None or wanted(read[0]):
                return read
            first = first or read
        if first is None:
            raise UnsupportedFile("the workbook has no worksheet")
        return first
    except DomainError:
        raise
    except Exception:
        raise UnsupportedFile(
            "the workbook cannot be read; open it in Excel or WPS and save it again"
        ) from None
    finally:
        workbook.close()


class _Parser(WorkSheetParser):
    """openpyxl's parser of a sheet's values (data_only), also telling a formula cell that has
    no saved value (no ``<v>``), which it reads as blank like an empty cell."""

    def parse_cell(self, element: Any) -> dict[str, Any]:
        cell: dict[str, Any] = super().parse_cell(element)
        cell["unsaved"] = element.find(FORMULA_TAG) is not None and element.find(VALUE_TAG) is None
        return cell


def _sheet_rows(workbook: Any, sheet: Any) -> tuple[list[Row], tuple[Merge, ...]]:
    """The rows of the read-only ``sheet`` with a value, and its merged ranges.

    Read by openpyxl's parser of the sheet's XML, driven here as its read-only sheets drive it
    (``ReadOnlyWorksheet._cells_by_row``), rather than by ``iter_rows``: it gives the rows the
    file has, by their numbers, where ``iter_rows`` makes up a blank one for each row missing
    down to the last the sheet claims to have; and once past the rows it has read the merged
    ranges, which a read-only sheet does not give (loading the sheet whole would, at some
    hundred times the memory: a cell object for each blank formatted cell).
    """
    rows = _Rows("sheet")
    with sheet._get_source() as source:
        parser = _Parser(
            source,
            sheet._shared_strings,
            data_only=True,
            epoch=workbook.epoch,
            date_formats=workbook._date_formats,
            timedelta_formats=workbook._timedelta_formats,
        )
        for line, parsed in parser.parse():
            # What the parser keeps of every row with a height or a style: nothing read here,
            # and a dict for each of a template's formatted rows.
            parser.row_dimensions.clear()
            cells = [""] * min(MAX_COLUMNS, max((c["column"] for c in parsed), default=0))
            numbers: set[int] = set()
            formulas: set[int] = set()
            for cell in parsed:
                if cell["column"] <= MAX_COLUMNS:
                    cells[cell["column"] - 1] = cell_text(cell["value"])
                    if cell["data_type"] == "n" and cell["value"] is not None:
                        numbers.add(cell["column"] - 1)
                    if cell["unsaved"]:
                        formulas.add(cell["column"] - 1)
            rows.add(line, cells, numbers, formulas)
        found = parser.merged_cells.mergeCell if parser.merged_cells is not None else ()
    merges = tuple(Merge(m.min_row, m.max_row, m.min_col - 1, m.max_col - 1) for m in found)
    return rows.kept, merges


# Excel's "Unicode text" (Unicode 文本, *.txt): UTF-16 after its byte order mark, cells between
# tabs. Offices save it when their CSV garbles Chinese.
_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def _read_csv(data: bytes) -> list[Row]:
    delimiter = ","
    unicode_text = _unicode_text(data)
    if unicode_text is not None:
        text, delimiter = unicode_text, "\t"
    elif b"\x00" in data:
        raise UnsupportedFile("the file is neither an .xlsx workbook nor a CSV text file")
    else:
        text = _decode(data)
    if "\x00" in text:
        raise UnsupportedFile("the file is neither an .xlsx workbook nor a CSV text file")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = _Rows("file")
        for line, values in enumerate(reader, start=1):
            rows.add(line, [unquoted(v.strip()) for v in values[:MAX_COLUMNS]])
        return rows.kept
    except csv.Error as error:
        raise UnsupportedFile(f"the CSV cannot be parsed: {error}") from None


def _unicode_text(data: bytes) -> str | None:
    """The text of Excel's "Unicode text", or None for anything else (bytes that merely start
    as its byte order mark do, and are refused as binary)."""
    if not data.startswith(_UTF16_MARKS):
        return None
    try:
        text = data.decode("utf-16")
    except UnicodeDecodeError:
        return None
    return text if "\t" in text else None


def office_text(data: bytes) -> str | None:
    """A file's text as an office's PC saves it: UTF-8, with or without a byte order mark, or
    else the ANSI code page of Chinese Windows, GBK (read as GB18030, of which GBK is part),
    in which Excel saves "CSV" and GIS tools their files. None when it is neither."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _decode(data: bytes) -> str:
    text = office_text(data)
    if text is None:
        raise UnsupportedFile("the CSV is neither UTF-8 nor GB18030 (GBK) text")
    return text


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        # Excel stores a typed-in phone number as a float.
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value).strip()


# ---------------------------------------------------------------- writing


# One plain signed number (a figure, or a phone number as +8613800138000) is read by a
# spreadsheet as that number and nothing more, so it stays as it is. Anything else after + or -
# is a formula to it: "-1-1", "+1-2" and "-(3)-(4)" are sums that it would work out.
_PLAIN_NUMBER = re.compile(r"[+-][0-9]+(\.[0-9]+)?")


def is_formula_like(text: str) -> bool:
    """Whether a spreadsheet would run this text as a formula (CSV injection, OWASP): an
    imported name such as ``=HYPERLINK(...)`` must come back out as text."""
    if not text:
        return False
    if text[0] in "=@\t\r":
        return True
    return text[0] in "+-" and _PLAIN_NUMBER.fullmatch(text) is None


def _quoted_in_csv(text: str) -> bool:
    """Whether a CSV export writes ``text`` after a "'": formula-like text, and formula-like
    text after one or more "'" already, so that reading drops exactly the "'" the export
    added (``unquoted``) and every text comes back as it was: "'=1" as "'=1", not "=1"."""
    return is_formula_like(text.lstrip("'"))


def unquoted(text: str) -> str:
    """A CSV cell as the export had it before it guarded it (``_csv_cell``): without the one
    "'" it put before formula-like text. Without this a ledger's "-" came back as "'-" and
    grew a "'" with each round trip, and a team named "-…" was not found."""
    if text.startswith("'") and _quoted_in_csv(text[1:]):
        return text[1:]
    return text


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and _quoted_in_csv(value):
        # The apostrophe is how a spreadsheet user writes "this is text".
        return "'" + value
    return value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """UTF-8 with a byte order mark, so Excel opens the Chinese text correctly."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


# What a worksheet's XML cannot hold (XML 1.0's Char): control characters but tab and line
# breaks (openpyxl refuses those), surrogates, and U+FFFE/U+FFFF (openpyxl writes those, and
# Excel then calls the file corrupt). Names are refused with them; one stored before that was
# still loses them on export rather than spoiling the workbook.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def sheet_text(value: str) -> str:
    """``value`` as a worksheet can hold it: without what XML cannot hold (_NOT_XML)."""
    return _NOT_XML.sub("", value)


def write_sheet(
    sheet: Worksheet,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    widths: Sequence[int] | None = None,
) -> int:
    """A header (under an optional title row) and the rows; returns the header's row number."""
    header_row = 1
    if title is not None:
        # A title or header may show a name too (a report's team).
        sheet.cell(row=1, column=1, value=sheet_text(title)).font = Font(bold=True, size=14)
        header_row = 2
    for column, name in enumerate(header, start=1):
        cell = sheet.cell(row=header_row, column=column, value=sheet_text(name))
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for offset, row in enumerate(rows, start=1):
        for column, value in enumerate(row, start=1):
            if isinstance(value, str):
                value = sheet_text(value)
            cell = sheet.cell(row=header_row + offset, column=column, value=value)
            if isinstance(value, str) and value.startswith("="):
                # openpyxl stores text starting with = as a formula; it is the user's text.
                cell.data_type = "s"
    for column, name in enumerate(header, start=1):
        width = widths[column - 1] if widths and column <= len(widths) else max(10, 2 * len(name))
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = f"A{header_row + 1}"
    return header_row


def workbook_bytes(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def download(content: bytes, media_type: str, filename: str, ascii_name: str) -> Response:
    # RFC 6266/5987: Chinese file names survive only percent-encoded as UTF-8; older clients
    # take the plain ASCII name.
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return Response(content, media_type=media_type, headers={"Content-Disposition": disposition})
