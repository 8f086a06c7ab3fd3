"""Content checksums of table columns, so that a result is used only once verified.

Parquet page checksums (CRC-32, written and checked by pyarrow) catch damage
to the pages, but not to the footer, which says how to decode them: a flipped
bit there can change what a file reads back as without failing any CRC. So
each shard file also carries, in its footer's key-value metadata, a checksum
of every column's decoded values, and a reader recomputes it for the columns
it reads. The checksum is a position-dependent sum over each value's bit
pattern (:func:`_position_words`): any single flipped bit changes it, as do
moved or added rows, and it costs four vectorized NumPy passes (no Python
per row).

Strings (``cell_id``, ``status``, ``regime``, ``init``) are checksummed through
their dictionary, so the value does not depend on how the dictionary was
encoded in each row group.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

_POSITION_MULTIPLIER = np.uint64(0x9E3779B97F4A7C16)  # even: see _position_words


def _position_words(start: int, count: int) -> np.ndarray:
    """An even, position-dependent 64-bit word per row (a Weyl sequence, doubled).

    A column's checksum is Σ (w ^ p) + Σ w·p over its rows' words w and these
    p, wrapping mod 2⁶⁴. Flipping bit j of one w changes it by 2^j·(±1 + p):
    with p even that is 2^j times an odd number, never 0 mod 2⁶⁴, so every
    single-bit change is detected; p differing by row makes moved rows count.
    """
    return (np.arange(start, start + count, dtype=np.uint64) + np.uint64(1)) * _POSITION_MULTIPLIER


def _string_words(values: list[str | bytes | None]) -> np.ndarray:
    """One 64-bit word per string or bytes value (a slice of its SHA-256)."""
    words = [
        int.from_bytes(
            hashlib.sha256(b"\x00null" if v is None else v if isinstance(v, bytes) else v.encode()).digest()[:8],
            "little",
        )
        for v in values
    ]
    return np.array(words, dtype=np.uint64)


def _words(chunk: pa.Array) -> np.ndarray:
    """A uint64 word per row of one chunk: its bit pattern, or its string's hash."""
    if pa.types.is_dictionary(chunk.type):
        dictionary = _string_words(chunk.dictionary.to_pylist())
        indices = chunk.indices.to_numpy(zero_copy_only=False)
        words: np.ndarray = dictionary[indices.astype(np.int64)]
        return words
    if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
        return _words(chunk.dictionary_encode())
    if pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type):
        return _string_words(chunk.to_pylist())  # summary files' sketches: one hash per value
    if pa.types.is_boolean(chunk.type):
        return np.asarray(chunk.to_numpy(zero_copy_only=False), dtype=np.uint64)
    values = np.ascontiguousarray(chunk.to_numpy(zero_copy_only=False))
    if values.dtype.itemsize != 8:
        values = values.astype(np.int64 if values.dtype.kind in "iub" else np.float64)
    return values.view(np.uint64)


class Checksums:
    """Running checksums of a table's columns, fed slice by slice in row order."""

    def __init__(self) -> None:
        self.sums: dict[str, np.uint64] = {}
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        positions: dict[tuple[int, int], np.ndarray] = {}  # shared by the columns (same chunking)
        with np.errstate(over="ignore"):
            for name in table.column_names:
                total = self.sums.get(name, np.uint64(0))
                start = self.rows
                for chunk in table.column(name).chunks:
                    words = _words(chunk)
                    key = (start, len(words))
                    if key not in positions:
                        positions[key] = _position_words(start, len(words))
                    p = positions[key]
                    total += np.sum(words ^ p, dtype=np.uint64) + np.sum(words * p, dtype=np.uint64)
                    start += len(words)
                self.sums[name] = total
        self.rows += table.num_rows

    def hexdigests(self) -> dict[str, str]:
        """``column name -> 16 hex digits``, the row count folded in."""
        with np.errstate(over="ignore"):
            count = np.uint64(self.rows) * _POSITION_MULTIPLIER + np.uint64(1)
            return {name: f"{int(total ^ count):016x}" for name, total in self.sums.items()}


def table_checksums(table: pa.Table) -> dict[str, str]:
    """``column name -> checksum`` for every column of ``table``."""
    checksums = Checksums()
    checksums.add(table)
    return checksums.hexdigests()


def mismatched_columns(table: pa.Table, expected: dict[str, str]) -> list[str]:
    """Columns of ``table`` whose checksum differs from ``expected`` (or is missing there)."""
    found = table_checksums(table)
    return [name for name in table.column_names if expected.get(name) != found[name]]
