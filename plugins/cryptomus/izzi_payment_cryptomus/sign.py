"""Cryptomus's signature, and JSON written the way PHP writes it.

Every request to the merchant API carries ``sign: md5(base64(body) . api_key)`` (hex) over
the exact bytes sent. A webhook carries ``sign`` inside its JSON object: Cryptomus's own
verification (doc.cryptomus.com, Webhook) decodes the body, unsets ``sign`` and signs
``json_encode($data, JSON_UNESCAPED_UNICODE)`` of the rest, so a verifier has to write
the object again exactly as PHP 7.1+ does, keys in the order received:

- no spaces; ``/`` as ``\\/``; non-ASCII as UTF-8, except U+2028 and U+2029 as ``\\u2028``
  and ``\\u2029``; ``\\b \\f \\n \\r \\t``, other control characters ``\\u00XX``;
- floats as the shortest round-trip digits, without a ``.0`` on whole numbers, in
  exponent form (``1.0e+25``, ``1.5e-7``) when the point is more than 17 digits right
  or more than 3 zeros left; integers beyond 64 bits as floats (PHP has no bigger int);
- an empty object as ``[]``, and an object keyed ``"0"``, ``"1"``… in order as a list
  (``json_decode($body, true)`` turns both into PHP lists).
"""

from __future__ import annotations

import base64
import hashlib
import json
from decimal import Decimal
from typing import Any

_INT64 = range(-(2**63), 2**63)


def sign(body: bytes, api_key: str) -> str:
    """Cryptomus's ``sign`` of those bytes: hex md5 of their base64 followed by the key."""
    return hashlib.md5(base64.b64encode(body) + api_key.encode()).hexdigest()


def php_json(value: Any) -> bytes:
    """``value`` as PHP's ``json_encode($value, JSON_UNESCAPED_UNICODE)`` writes it (UTF-8);
    a lone surrogate raises ``UnicodeEncodeError`` (PHP refuses it too)."""
    return "".join(_parts(value)).encode()


def _parts(value: Any) -> Any:
    if isinstance(value, dict):
        if list(value) == [str(n) for n in range(len(value))]:  # {} and {"0":…,"1":…}: a PHP list
            value = list(value.values())
        else:
            yield "{"
            for n, (key, item) in enumerate(value.items()):
                yield ("," if n else "") + _string(str(key)) + ":"
                yield from _parts(item)
            yield "}"
            return
    if isinstance(value, list):
        yield "["
        for n, item in enumerate(value):
            if n:
                yield ","
            yield from _parts(item)
        yield "]"
    elif isinstance(value, str):
        yield _string(value)
    elif value is True or value is False or value is None:
        yield json.dumps(value)
    elif isinstance(value, int):
        yield str(value) if value in _INT64 else _float(float(value))
    elif isinstance(value, float):
        yield _float(value)
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def _string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted.replace("/", "\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _float(number: float) -> str:
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("PHP cannot encode NaN or infinity")
    if number == 0:
        return "-0" if str(number).startswith("-") else "0"
    negative, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    text, point = "".join(map(str, digits)), len(digits) + int(exponent)  # 0.d1d2... times 10^point
    if point < -3 or point > 17:
        power = point - 1
        text = f"{text[0]}.{text[1:] or '0'}e{'-' if power < 0 else '+'}{abs(power)}"
    elif point <= 0:
        text = "0." + "0" * -point + text
    elif point >= len(text):
        text += "0" * (point - len(text))
    else:
        text = f"{text[:point]}.{text[point:]}"
    return ("-" if negative else "") + text
