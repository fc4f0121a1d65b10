"""izzi_proxy.sse: byte-level SSE lines and events, the cases the official SDKs test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator

import pytest

from izzi_proxy.sse import (
    EventDecoder,
    LineSplitter,
    SSEEvent,
    aiter_events,
    encode,
    has_complete_event,
    iter_events,
)

UNICODE_TEXT = "line\u2028sep\u2029para\u0085nel é 漢 😀"

# (id, stream bytes, expected events)
STREAMS = [
    (
        "lf",
        b'data: {"a": 1}\n\nevent: ping\ndata: x\n\n',
        [SSEEvent(None, '{"a": 1}'), SSEEvent("ping", "x")],
    ),
    (
        "crlf",
        b'data: {"a": 1}\r\n\r\nevent: ping\r\ndata: x\r\n\r\n',
        [SSEEvent(None, '{"a": 1}'), SSEEvent("ping", "x")],
    ),
    (
        "cr",
        b'data: {"a": 1}\r\revent: ping\rdata: x\r\r',
        [SSEEvent(None, '{"a": 1}'), SSEEvent("ping", "x")],
    ),
    (
        "mixed-line-ends",
        b"data: a\r\n\ndata: b\n\r\ndata: c\r\r\ndata: d\r\n\r",
        [SSEEvent(None, "a"), SSEEvent(None, "b"), SSEEvent(None, "c"), SSEEvent(None, "d")],
    ),
    (
        "multi-line-data",
        b"event: completion\ndata: one\ndata: two\r\ndata:\ndata: four\n\n",
        [SSEEvent("completion", "one\ntwo\n\nfour")],
    ),
    (
        "unicode-json",
        b"data: " + json.dumps({"text": UNICODE_TEXT}, ensure_ascii=False).encode() + b"\n\n",
        [SSEEvent(None, json.dumps({"text": UNICODE_TEXT}, ensure_ascii=False))],
    ),
    (
        "comments",
        b":\n: keep-alive\n\ndata: x\n: between lines\ndata: y\n\n:ping\n\n",
        [SSEEvent(None, "x\ny")],
    ),
    (
        "id-and-retry",
        b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n",
        [SSEEvent(None, "a", "7", 1500), SSEEvent(None, "b", "7"), SSEEvent(None, "c", "8")],
    ),
    (
        "no-space-after-colon",
        b'event:tick\ndata:{"n":1}\ndata:  two spaces\n\n',
        [SSEEvent("tick", '{"n":1}\n two spaces')],
    ),
    (
        "no-trailing-blank-line",
        b"data: first\n\ndata: last",
        [SSEEvent(None, "first"), SSEEvent(None, "last")],
    ),
    (
        "no-trailing-blank-line-after-line-end",
        b"data: first\n\nevent: end\ndata: last\n",
        [SSEEvent(None, "first"), SSEEvent("end", "last")],
    ),
]
STREAM_IDS = [s[0] for s in STREAMS]


def splits(data: bytes) -> Iterator[list[bytes]]:
    """Every way of cutting ``data`` in two, then one byte at a time."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


async def achunks(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def collect(chunks: Iterable[bytes]) -> list[SSEEvent]:
    return [event async for event in aiter_events(achunks(chunks))]


def lines_of(chunks: Iterable[bytes]) -> list[bytes]:
    splitter = LineSplitter()
    out = [line for chunk in chunks for line in splitter.feed(chunk)]
    return out + list(splitter.finish())


# -- whole streams, split every way -----------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [s[1:] for s in STREAMS], ids=STREAM_IDS)
def test_iter_events_whole(data: bytes, expected: list[SSEEvent]) -> None:
    assert list(iter_events(data)) == expected


@pytest.mark.parametrize(("data", "expected"), [s[1:] for s in STREAMS], ids=STREAM_IDS)
async def test_aiter_events_every_split(data: bytes, expected: list[SSEEvent]) -> None:
    assert await collect([data]) == expected
    for chunks in splits(data):
        assert await collect(chunks) == expected, chunks


@pytest.mark.parametrize(("data", "expected"), [s[1:] for s in STREAMS], ids=STREAM_IDS)
def test_lines_same_at_every_split(data: bytes, expected: list[SSEEvent]) -> None:
    whole = lines_of([data])
    for chunks in splits(data):
        assert lines_of(chunks) == whole, chunks


async def test_aiter_events_empty_stream() -> None:
    assert await collect([]) == []
    assert await collect([b"", b""]) == []
    assert list(iter_events(b"")) == []


# -- lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"a\r", b"\nb\r\n"], [b"a", b"b"]),  # one CRLF across two chunks: one line end
        ([b"a\r", b"\n", b"b\n"], [b"a", b"b"]),
        ([b"a\r", b"\r\nb\n"], [b"a", b"", b"b"]),  # CR, then CRLF: an empty line
        ([b"a\r", b"", b"\nb\n"], [b"a", b"b"]),  # an empty chunk keeps the pending CR
        ([b"a\r", b"b\r", b"\n"], [b"a", b"b"]),
        ([b"a\n", b"\nb\n"], [b"a", b"", b"b"]),  # LF then LF is two line ends
        ([b"a\r", b"\r", b"\r"], [b"a", b"", b""]),
        ([b"par", b"tial"], [b"partial"]),
        ([b"\n\r\n\r"], [b"", b"", b""]),
    ],
)
def test_line_splitter(chunks: list[bytes], lines: list[bytes]) -> None:
    assert lines_of(chunks) == lines


def test_line_splitter_pending() -> None:
    splitter = LineSplitter()
    assert list(splitter.feed(b"data: ab")) == []
    assert splitter.pending == 8
    assert list(splitter.feed(b"c\ndata: d")) == [b"data: abc"]
    assert splitter.pending == 7
    assert list(splitter.finish()) == [b"data: d"]
    assert splitter.pending == 0
    assert list(splitter.finish()) == []


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_separators_do_not_split(sep: str) -> None:
    payload = json.dumps({"content": f"a{sep}b"}, ensure_ascii=False)
    assert len(payload.splitlines()) == 2  # what str.splitlines() would have done
    (event,) = iter_events(b"data: " + payload.encode() + b"\n\n")
    assert json.loads(event.data) == {"content": f"a{sep}b"}


@pytest.mark.parametrize("char", ["é", "漢", "😀", "\u2028"])
async def test_multibyte_character_split_across_chunks(char: str) -> None:
    raw = f"data: [{char}]\n\n".encode()
    start = raw.index(b"[") + 1
    for cut in range(start + 1, start + len(char.encode())):  # inside the character
        assert await collect([raw[:cut], raw[cut:]]) == [SSEEvent(None, f"[{char}]")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert list(iter_events(b"data: \xff\xfe\n\n")) == [SSEEvent(None, "\ufffd\ufffd")]


# -- fields ----------------------------------------------------------------------------------


def decode(*lines: bytes) -> list[SSEEvent]:
    decoder = EventDecoder()
    return [event for line in lines if (event := decoder.decode_line(line)) is not None]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((b"data: x", b""), [SSEEvent(None, "x")]),
        ((b"data:x", b""), [SSEEvent(None, "x")]),
        ((b"data:  x ", b""), [SSEEvent(None, " x ")]),  # only one leading space goes
        ((b"data", b""), [SSEEvent(None, "")]),  # a field with no colon: empty value
        ((b"data: a:b:c", b""), [SSEEvent(None, "a:b:c")]),
        ((b"event: e", b"data: x", b""), [SSEEvent("e", "x")]),
        ((b"unknown: y", b"data: x", b""), [SSEEvent(None, "x")]),
        ((b"DATA: x", b""), []),  # field names are case-sensitive
        ((b"", b"", b""), []),
        ((b": comment", b""), []),
        ((b"id: a\0b", b"data: x", b""), [SSEEvent(None, "x")]),  # an id with NUL is ignored
        ((b"retry: soon", b"data: x", b""), [SSEEvent(None, "x")]),
        ((b"retry: 10", b""), [SSEEvent(None, "", retry=10)]),
        ((b"event: a", b"", b"data: x", b""), [SSEEvent("a", ""), SSEEvent(None, "x")]),
    ],
)
def test_decode_line(lines: tuple[bytes, ...], expected: list[SSEEvent]) -> None:
    assert decode(*lines) == expected


def test_event_name_and_retry_reset_but_id_persists() -> None:
    events = decode(b"id: 1", b"event: a", b"retry: 5", b"data: x", b"", b"data: y", b"")
    assert events == [SSEEvent("a", "x", "1", 5), SSEEvent(None, "y", "1", None)]


def test_empty_id_resets_last_event_id() -> None:
    assert decode(b"id: 1", b"data: x", b"", b"id", b"data: y", b"") == [
        SSEEvent(None, "x", "1"),
        SSEEvent(None, "y", ""),
    ]


def test_retry_with_non_ascii_digits_is_ignored() -> None:
    assert decode("retry: ²".encode(), b"data: x", b"") == [SSEEvent(None, "x")]


def test_leading_bom_is_ignored() -> None:
    assert list(iter_events(b"\xef\xbb\xbfdata: x\n\n")) == [SSEEvent(None, "x")]


# -- has_complete_event ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "complete"),
    [
        (b"data: x\n\n", True),
        (b"data: x\r\n\r\n", True),
        (b"data: x\r\r", True),
        (b"data: x\n\r\n", True),
        (b"data: x\r\n\n", True),
        (b"data: x\r\n\r", True),  # CRLF then CR: a blank line, whatever follows
        (b"data: x\n\ndata: partial", True),
        (bytearray(b"data: x\n\n"), True),
        (b"data: x\n", False),
        (b"data: x\r\n", False),
        (b"data: x\r", False),
        (b"data: x\ndata: y\r\n", False),
        (b"data: x", False),
        (b"", False),
    ],
)
def test_has_complete_event(buffer: bytes, complete: bool) -> None:
    assert has_complete_event(buffer) is complete


# -- encode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "event", "frame"),
    [
        ('{"a":1}', None, b'data: {"a":1}\n\n'),
        (b'{"a":1}', None, b'data: {"a":1}\n\n'),
        ("[DONE]", None, b"data: [DONE]\n\n"),
        ('{"type":"ping"}', "ping", b'event: ping\ndata: {"type":"ping"}\n\n'),
        ("é 漢 😀 \u2028", "message_delta", "event: message_delta\ndata: é 漢 😀 \u2028\n\n".encode()),
        ("", None, b"data: \n\n"),
    ],
)
def test_encode_round_trips(data: str | bytes, event: str | None, frame: bytes) -> None:
    assert encode(data, event) == frame
    assert has_complete_event(frame)
    text = data.decode() if isinstance(data, bytes) else data
    assert list(iter_events(frame)) == [SSEEvent(event, text)]


def test_encoded_frames_concatenate() -> None:
    stream = encode('{"n":1}') + encode("x", "e") + encode("[DONE]")
    assert list(iter_events(stream)) == [
        SSEEvent(None, '{"n":1}'),
        SSEEvent("e", "x"),
        SSEEvent(None, "[DONE]"),
    ]
