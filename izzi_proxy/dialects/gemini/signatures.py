"""Claude's signed thinking, carried through a Gemini client inside a thought signature.

Gemini clients send each function call's ``thoughtSignature`` back as they got it: that is
how Gemini 3 keeps its reasoning across tool turns. A Claude answer has signed thinking
blocks instead, which Anthropic needs back byte for byte, before the turn's tool calls, to
go on thinking in the next turn. So the gateway writes an answer's signed thinking (text and
signature, and redacted blocks) into its first function call's signature, as base64 bytes
under a mark no Google signature starts with, and reads them back as that turn's thinking.
Toward a Gemini upstream such a signature is replaced by Google's placeholder.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from izzi_proxy import canonical as c

_MARK = b"izzi-thinking:"
_ENCODED_MARK = base64.b64encode(_MARK)[:16].decode()  # what every carried signature starts with


def carry(blocks: list[c.Thinking | c.RedactedThinking]) -> str | None:
    """The signature that carries these blocks, or None if none is signed (nothing to keep)."""
    kept = [
        ["t", b.text, b.signature] if isinstance(b, c.Thinking) else ["r", b.data]
        for b in blocks
        if isinstance(b, c.RedactedThinking) or b.signature
    ]
    return base64.b64encode(_MARK + orjson.dumps(kept)).decode() if kept else None


def is_carried(signature: str) -> bool:
    return signature.replace("-", "+").replace("_", "/").startswith(_ENCODED_MARK)


def carried(signature: str) -> list[c.Thinking | c.RedactedThinking]:
    """The blocks a signature carries (standard or URL-safe base64, as SDKs send bytes
    back); none for any other signature (Google's, a placeholder, a damaged one)."""
    if not is_carried(signature):
        return []
    try:
        raw = base64.b64decode(signature.replace("-", "+").replace("_", "/"), validate=True)
        kept = orjson.loads(raw[len(_MARK) :])
    except (binascii.Error, ValueError):
        return []
    blocks: list[c.Thinking | c.RedactedThinking] = []
    for entry in kept if isinstance(kept, list) else ():
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == "t" and all(isinstance(v, str) for v in entry):
            blocks.append(c.Thinking(entry[1], entry[2]))
        elif isinstance(entry, list) and len(entry) == 2 and entry[0] == "r" and isinstance(entry[1], str):
            blocks.append(c.RedactedThinking(entry[1]))
    return blocks
