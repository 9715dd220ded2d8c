"""Strict body parsing (JSON, and CSV where a view takes it): malformed bodies become a
400, never a 500."""

import csv
import io
from dataclasses import dataclass

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw:
            return {}
        try:
            # orjson rejects NaN/Infinity, invalid UTF-8 and nesting deeper than 1024.
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


@dataclass(frozen=True)
class CsvTable:
    """A parsed CSV body: the header row and the records after it, as strings.

    Record n of the file (the header is record 1, as a spreadsheet numbers its rows) is
    `rows[n - 2]`; a blank line is an empty record, kept so the numbers stay right.
    """

    header: list[str]
    rows: list[list[str]]


class CSVParser(BaseParser):
    """`text/csv` in UTF-8, a byte order mark and CRLF line ends tolerated; malformed
    input (not UTF-8, an unterminated quote, a field over the csv module's limit) is a 400."""

    media_type = "text/csv"
    NO_HEADER = "CSV parse error - the body needs a header row first."

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(f"CSV parse error - not UTF-8 text (byte {exc.start}).") from None
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            records = list(reader)
        except csv.Error as exc:
            raise ParseError(f"CSV parse error on row {reader.line_num}: {exc}") from None
        if not records or not any(cell.strip() for cell in records[0]):
            raise ParseError(self.NO_HEADER)
        return CsvTable(header=records[0], rows=records[1:])
