"""LineSplitter: bytes in, bounded text lines out."""

from __future__ import annotations

import pytest

from sweeper.runtime.output import LineSplitter


def split(*chunks: bytes, max_line_bytes: int = 16) -> list[str]:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, max_line_bytes=max_line_bytes)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.close()
    return lines


def test_lines_across_chunks_and_crlf() -> None:
    assert split(b"a\r\nb", b"c\n\nd") == ["a", "bc", "", "d"]


def test_no_trailing_empty_line_after_final_newline() -> None:
    assert split(b"one\ntwo\n") == ["one", "two"]


def test_multibyte_character_split_between_chunks_is_whole() -> None:
    data = "é€\n".encode()
    assert split(data[:1], data[1:3], data[3:]) == ["é€"]


def test_long_line_is_chunked_at_character_boundaries() -> None:
    text = "€" * 20  # 3 bytes each: a cut at 16 bytes would break a character
    lines = split(text.encode() + b"\n")
    assert "".join(lines) == text
    assert all(len(line.encode()) <= 16 for line in lines)
    assert len(lines) > 1


def test_long_unterminated_output_stays_bounded() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, max_line_bytes=16)
    for _ in range(100):
        splitter.feed(b"x" * 10)
        assert len(splitter._pending) <= 16
    splitter.close()
    assert "".join(lines) == "x" * 1000


def test_invalid_utf8_is_replaced() -> None:
    assert split(b"\xff\xfeok\x00\n") == ["\ufffd\ufffdok\x00"]


def test_too_small_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LineSplitter(print, max_line_bytes=2)
