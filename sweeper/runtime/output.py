"""Turning a step's raw output bytes into text lines, safely.

Steps print anything: binary garbage, megabyte lines, half a line then a pause. The splitter
keeps at most one line's worth of bytes (``max_line_bytes``), decodes each line as UTF-8 with
``errors="replace"`` and never lets a long line grow its buffer.
"""

from __future__ import annotations

from collections.abc import Callable

#: Lines longer than this many bytes are delivered in chunks of at most this size.
MAX_LINE_BYTES = 64 * 1024


class LineSplitter:
    """Feeds text lines to ``on_line`` as bytes arrive.

    Lines end with ``\\n``; a trailing ``\\r`` is dropped. A line longer than
    ``max_line_bytes`` is cut into chunks, each cut moved back to a UTF-8 character boundary
    so no character is broken. Call :meth:`close` at the end to deliver a last line that has
    no newline.

    >>> lines = []
    >>> splitter = LineSplitter(lines.append)
    >>> splitter.feed(b"a\\r\\nb")
    >>> splitter.feed(b"c\\n")
    >>> lines
    ['a', 'bc']
    """

    def __init__(
        self, on_line: Callable[[str], None], *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        if max_line_bytes < 4:
            raise ValueError(f"max_line_bytes must be at least 4, not {max_line_bytes}")
        self._on_line = on_line
        self._max = max_line_bytes
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Deliver every line completed by ``data``; keep the rest for the next call."""
        buffer = self._pending + data if self._pending else data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._emit(buffer[start:end])
            start = end + 1
        rest = buffer[start:]
        while len(rest) > self._max:
            cut = self._cut(rest)
            self._deliver(rest[:cut])
            rest = rest[cut:]
        self._pending = rest

    def close(self) -> None:
        """Deliver the last line when the output did not end with a newline."""
        if self._pending:
            rest, self._pending = self._pending, b""
            self._emit(rest)

    def _emit(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        while len(line) > self._max:
            cut = self._cut(line)
            self._deliver(line[:cut])
            line = line[cut:]
        self._deliver(line)

    def _cut(self, data: bytes) -> int:
        # Step back over at most three UTF-8 continuation bytes so a character stays whole.
        cut = self._max
        for candidate in range(cut, cut - 4, -1):
            if data[candidate] & 0xC0 != 0x80:
                return candidate
        return cut

    def _deliver(self, line: bytes) -> None:
        self._on_line(line.decode("utf-8", errors="replace"))
