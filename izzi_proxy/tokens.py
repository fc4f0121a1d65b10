"""Local token estimates, for models whose upstream cannot count (``count_tokens``), over
a body the Messages dialect has validated (its fields have their types, or are null).

About four characters per token (the product's documented rule) over everything the
model reads: system, tool definitions, every message part. Images are counted as
Anthropic prices them, ``width x height / 750`` capped at 1,600, with the size read from
the image's own header (PNG, GIF, WebP, JPEG); a PDF as 1,600 per page. No real
tokenizer is bundled: the ones worth having need files fetched at run time.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Any

import orjson

from izzi_proxy import canonical as c

IMAGE_TOKENS_MAX = 1600
PDF_PAGE_TOKENS = 1600
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![s\w])")


def estimate_text(text: str) -> int:
    return math.ceil(len(text) / 4)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, or None if the format is not recognised."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        if data[12:16] == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if data[12:16] == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if data[12:16] == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            i += 2 + length
    return None


def _b64(data: str, limit: int | None = None) -> bytes:
    chunk = data if limit is None else data[: limit - limit % 4]
    try:
        return base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return b""


def image_tokens(source: dict[str, Any]) -> int:
    if source.get("type") == "base64" and (size := image_size(_b64(source.get("data") or "", 64 * 1024))):
        return min(IMAGE_TOKENS_MAX, max(1, math.ceil(size[0] * size[1] / 750)))
    return IMAGE_TOKENS_MAX


def document_tokens(block: dict[str, Any]) -> int:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        pages = len(_PDF_PAGE.findall(_b64(source.get("data") or "")))
        return max(1, pages) * PDF_PAGE_TOKENS
    if source.get("type") == "text":
        return estimate_text(source.get("data") or "")
    if source.get("type") == "content":
        return sum(_block_tokens(b) for b in source.get("content") or [] if isinstance(b, dict))
    return PDF_PAGE_TOKENS


def _block_tokens(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "image":
        return image_tokens(block.get("source") or {})
    if kind == "document":
        return document_tokens(block)
    if kind == "tool_use":
        return estimate_text(block.get("name") or "") + estimate_text(orjson.dumps(block.get("input") or {}).decode())
    if kind == "tool_result":
        return _content_tokens(block.get("content"))
    texts = [block.get(k) for k in ("text", "thinking") if isinstance(block.get(k), str)]
    return sum(estimate_text(t) for t in texts)


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_text(content)
    if isinstance(content, list):
        return sum(_block_tokens(b) for b in content if isinstance(b, dict))
    return 0


def estimate_messages_body(body: dict[str, Any]) -> int:
    """Input tokens of an Anthropic Messages body, estimated."""
    total = _content_tokens(body.get("system"))
    for tool in body.get("tools") or []:
        total += estimate_text(orjson.dumps(tool).decode())
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += 3 + _content_tokens(message.get("content"))  # role and turn framing
    return total


# -- estimates from bytes, for holds and for answers with no usage ---------------------------

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{1024,}={0,2}")
_BASE64_HINTS = (b";base64,", b'"base64"')


def estimate_raw(raw: bytes) -> int:
    """Input tokens of a request body from its size, as cheaply as a hold needs: four bytes a
    token over the JSON as sent (its syntax makes this generous for text), except that each
    embedded base64 file (an image, a PDF) counts as ``IMAGE_TOKENS_MAX``, not its size."""
    size, files = len(raw), 0
    if any(hint in raw for hint in _BASE64_HINTS):
        for run in _BASE64_RUN.finditer(raw):
            size -= run.end() - run.start()
            files += 1
    return math.ceil(size / 4) + files * IMAGE_TOKENS_MAX


# The JSON string values that carry what a model wrote, in each client format's stream events
# (a final "done" event that repeats the whole text is not among them).
_STRING = rb'\s*:\s*"((?:[^"\\]|\\.)*)"'
OUTPUT_FIELDS = {
    "openai_chat": re.compile(rb'"(?:content|reasoning_content|reasoning|refusal|arguments)"' + _STRING),
    "anthropic_messages": re.compile(rb'"(?:text|thinking|partial_json)"' + _STRING),
    "openai_responses": re.compile(rb'"delta"' + _STRING),
    # Gemini: text parts, and a function call's arguments (an object, written whole in one
    # line: counted from its key to the line's end or a thought signature, a little over)
    "gemini": re.compile(rb'"text"' + _STRING + rb'|"args"\s*:\s*(\{(?:(?!"thoughtSignature")[^\r\n])*)'),
}
ANSWER_FIELDS = re.compile(rb'"(?:content|text|thinking|reasoning_content|refusal|arguments)"' + _STRING)


def output_bytes(pattern: re.Pattern[bytes], data: bytes) -> int:
    """How many bytes of model output the matching string values in ``data`` hold (the
    pattern's one group, or whichever of its groups matched)."""
    found = pattern.findall(data)
    if pattern.groups > 1:
        return sum(len(a) + len(b) for a, b in found)
    return sum(map(len, found))


def tokens_of_bytes(size: int) -> int:
    return math.ceil(size / 4)


# -- the context-window check -----------------------------------------------------------------

IMAGE_TOKENS_MIN = 85  # the least an image costs (OpenAI's low detail)


def estimate_input_floor(req: c.Request) -> int:
    """Input tokens a request surely has, about: its text at four characters a token, each
    image at the least any vendor counts for one. Used to refuse a request too long for a
    model's window before any upstream is asked, so it must not overstate (``estimate_raw``,
    made for holds, counts the JSON's syntax too)."""
    total = sum(estimate_text(s) for s in req.system)
    total += sum(
        estimate_text(t.name + (t.description or "")) + len(orjson.dumps(t.parameters)) // 4 for t in req.tools
    )
    for message in req.messages:
        for part in message.parts:
            total += _part_floor(part)
    return total


def _part_floor(part: c.Part) -> int:
    if isinstance(part, c.Text | c.Thinking):
        return estimate_text(part.text)
    if isinstance(part, c.ToolCall):
        return estimate_text(part.name + part.arguments)
    if isinstance(part, c.ToolResult):
        return sum(_part_floor(p) for p in part.content)
    if isinstance(part, c.Image):
        return IMAGE_TOKENS_MIN
    if isinstance(part, c.Document):
        return estimate_text(part.text or "")
    return 0
