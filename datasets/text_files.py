"""Annotation text files as every loader reads them: UTF-8, with or without a byte-order mark.

Spreadsheet programs and Windows editors save CSV files with a byte-order mark (UTF-8's EF BB BF, or UTF-16 /
UTF-32 with theirs); read as plain UTF-8 the mark becomes part of the first field, so the first image "does not
exist". Here a mark selects its encoding and is removed; text without one must be UTF-8. Anything else (Latin-1
bytes, UTF-16 without a mark, NUL bytes) is a DataError naming the file, the line and the column of the first bad
byte, instead of a guess. The rows of a valid UTF-8 file come out exactly as `open(path, newline="")` gives them.
"""
from __future__ import annotations

import codecs
import csv
from pathlib import Path
from typing import Iterator

from datasets.errors import DataError

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one. Each mark's codec for decoding the bytes after it,
# and the codec that reads the whole file, mark included, with `open`.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"), (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)


def read_text(path: str | Path, what: str = "annotation file") -> str:
    """The text of `path`: decoded by its byte-order mark (removed), else as UTF-8; an undecodable byte or a NUL is
    a DataError '<path>:<line>: ...' saying what was found and what to do, a file that cannot be read (a folder, no
    permission) a DataError naming it."""
    return _decoded(Path(path), what)[0]


def _decoded(path: Path, what: str) -> tuple[str, str]:
    """(the text, the codec `open` reads the file with)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:  # a folder of that name, no permission, an I/O error
        raise DataError(f"{path}: the {what} cannot be read ({error.strerror or error})") from None
    encoding, whole, start = "utf-8", "utf-8", 0  # utf-8-sig only when there is a mark: its decoder is slower
    for mark, name, file_codec in BYTE_ORDER_MARKS:
        if data.startswith(mark):
            encoding, whole, start = name, file_codec, len(mark)
            break
    try:
        text = data[start:].decode(encoding)
    except UnicodeDecodeError as error:
        position = start + error.start
        line = data[:position].count(b"\n") + 1
        column = position - (data.rfind(b"\n", 0, position) + 1) + 1
        raise DataError(f"{path}:{line}: the {what} is not {encoding.upper()} text: byte 0x{data[position]:02x} at "
                        f"column {column} cannot be decoded ({error.reason}); save it as UTF-8") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        hint = " (UTF-16 text without a byte-order mark?)" if encoding == "utf-8" else ""
        raise DataError(f"{path}:{line}: the {what} holds NUL bytes{hint}; save it as UTF-8 text")
    return text, whole


def csv_rows(path: str | Path, what: str = "annotation file") -> Iterator[tuple[int, list[str]]]:
    """(line number from 1, fields) of every row of a comma-separated file (read_text's decoding, checked first; the
    rows are then read from the file itself, which is faster than from the text in memory); a row the csv module
    cannot parse is a DataError naming its line."""
    path = Path(path)
    _, encoding = _decoded(path, what)
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle)
        try:
            yield from enumerate(reader, start=1)  # rows numbered as before (a quoted newline is one row)
        except csv.Error as error:  # raised while reading the next row, never by the consumer (it is not sent in)
            raise DataError(f"{path}:{reader.line_num}: the {what} cannot be parsed as comma-separated values "
                            f"({error})") from None
