"""How raw files are read, a shard at a time: the adapter base, JSON lines, JSON documents.

An adapter only knows its format. It yields `RawRecord`s (a source id and the raw value, or the parse
error that replaced it) and turns one raw value into `ProblemFields`, raising `RowError` for a bad row.
Image decoding, ids and validation are shared and live in the ingest stage.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.ingest.sources.records import ProblemFields, RawRecord
from pipeline.io import stable_hash
from pipeline.paths import cache_dir

if TYPE_CHECKING:
    from pipeline.ingest.sources.config import SourceConfig

SPILL_VERSION = 1  # of the JSON-lines copy of a JSON document; a new layout gets new cache keys


class SourceAdapter(ABC):
    def __init__(self, config: SourceConfig, data_root: Path):
        self.config = config
        path = Path(config.path)
        self.path = path if path.is_absolute() else data_root / path
        root = Path(config.image_root) if config.image_root else (self.path if self.path.is_dir() else self.path.parent)
        self.image_root = root if root.is_absolute() else data_root / root

    def identity(self) -> list:
        """What a change of the raw input looks like, for the stage's config hash."""
        stat = self.path.stat()
        return [str(self.path), stat.st_size, stat.st_mtime_ns]

    def count(self) -> int:
        total = self._count()
        return min(total, self.config.limit) if self.config.limit is not None else total

    def records(self, start: int, stop: int) -> Iterator[RawRecord]:
        yield from self._records(start, min(stop, self.count()))

    @abstractmethod
    def _count(self) -> int: ...

    @abstractmethod
    def _records(self, start: int, stop: int) -> Iterator[RawRecord]: ...

    @abstractmethod
    def to_fields(self, record: RawRecord) -> ProblemFields: ...


class JsonLinesAdapter(SourceAdapter):
    """One JSON object per line; a line that does not parse becomes a quarantined row.

    A row's source id is the value of its `id_field` when it has one, else its 0-based line number in
    the file (blank lines are skipped, not renumbered); a line that does not parse keeps its line number.
    """

    id_field: str | None = None

    @property
    def lines_path(self) -> Path:
        return self.path

    @cached_property
    def _line_starts(self) -> tuple[array, array]:
        """(line number, byte offset) of every non-blank line, from one streaming pass: a shard seeks to
        its first line, so memory is 16 bytes a line, not the file (a 1.6M-line file is gigabytes)."""
        numbers, offsets = array("q"), array("q")
        offset = 0
        with open(self.lines_path, "rb") as lines:
            for number, line in enumerate(lines):
                if line.strip():
                    numbers.append(number)
                    offsets.append(offset)
                offset += len(line)
        return numbers, offsets

    def _count(self) -> int:
        return len(self._line_starts[0])

    def _lines(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        numbers, offsets = self._line_starts
        if start >= stop:
            return
        with open(self.lines_path, "rb") as lines:
            lines.seek(offsets[start])
            wanted = iter(numbers[start:stop])
            number = next(wanted)
            for line in lines:
                if line.strip():
                    yield number, line.rstrip(b"\n")
                    number = next(wanted, None)
                    if number is None:
                        return

    def _records(self, start: int, stop: int) -> Iterator[RawRecord]:
        for number, line in self._lines(start, stop):
            try:
                value = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                yield RawRecord(str(number), line[:2000].decode("utf-8", "replace"), f"invalid_json: {error}")
                continue
            yield RawRecord(self._source_id(value, str(number)), value)

    def _source_id(self, value: Any, fallback: str) -> str:
        """The row's `id_field` value when it is a usable id (text or integer), else `fallback`."""
        source_id = value.get(self.id_field) if self.id_field and isinstance(value, dict) else None
        valid_id = isinstance(source_id, str | int) and not isinstance(source_id, bool)
        return str(source_id) if valid_id else fallback


class JsonDocumentAdapter(JsonLinesAdapter):
    """One JSON document: an object keyed by problem id (TabMWP, MathVista) or an array of rows (the
    LLaMA-Factory / ShareGPT layout of released SFT sets).

    The document is streamed once with ijson into a JSON-lines copy in the cache (`[key, value]` a line,
    keyed by the file's path, size and mtime), which shards then seek into like any JSON-lines source:
    memory stays one row, not the file (a 1.6M-row array is gigabytes)."""

    shapes: tuple[str, ...] = ("object", "array")  # top-level values this format accepts

    @cached_property
    def lines_path(self) -> Path:
        stat = self.path.stat()
        cache_key = stable_hash([str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, SPILL_VERSION], length=24)
        spill = cache_dir() / "json-lines" / f"{cache_key}.jsonl"
        if not spill.exists():
            spill.parent.mkdir(parents=True, exist_ok=True)
            staging = spill.with_name(f".{spill.name}.{os.getpid()}.tmp")
            try:
                with open(self.path, "rb") as document, open(staging, "w", encoding="utf-8") as lines:
                    for key, value in self._stream(document):
                        lines.write(json.dumps([key, value], ensure_ascii=False) + "\n")
                os.replace(staging, spill)  # another process may have won the race: its copy is identical
            finally:
                staging.unlink(missing_ok=True)
        return spill

    def _stream(self, document) -> Iterator[tuple[str, Any]]:
        import ijson

        try:
            _, shape, _ = next(ijson.parse(document))  # the first event says what the top level is
            document.seek(0)
            if shape == "start_map" and "object" in self.shapes:
                yield from ((str(k), v) for k, v in ijson.kvitems(document, "", use_float=True))
            elif shape == "start_array" and "array" in self.shapes:
                yield from ((str(i), v) for i, v in enumerate(ijson.items(document, "item", use_float=True)))
            else:
                wanted = " or ".join({"object": "a JSON object keyed by problem id", "array": "a JSON array of rows"}[x] for x in self.shapes)
                raise ValueError(f"{self.config.name}: {self.path} must hold {wanted}")
        except ijson.JSONError as error:
            raise ValueError(f"{self.config.name}: {self.path} is not valid JSON: {error}") from None

    def _records(self, start: int, stop: int) -> Iterator[RawRecord]:
        for _, line in self._lines(start, stop):
            key, value = json.loads(line)
            yield RawRecord(self._source_id(value, key), value)


class JsonObjectAdapter(JsonDocumentAdapter):
    """A JSON file holding one object keyed by problem id (TabMWP, MathVista)."""

    shapes = ("object",)
