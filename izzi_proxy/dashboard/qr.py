"""QR codes for the dashboard, as PNG ``data:`` URIs an ``<img>`` shows with no extra request."""

from __future__ import annotations

import segno

__all__ = ["png_data_uri"]

SCALE = 6  # pixels per module: a 2.5 cm code on a screen for a typical VietQR payload
BORDER = 4  # the quiet zone, in modules, that the QR standard asks for


def png_data_uri(payload: str) -> str:
    """``data:image/png;base64,...`` of ``payload`` as a QR code, error correction level M."""
    qr = segno.make_qr(payload, error="m", boost_error=False)
    return qr.png_data_uri(scale=SCALE, border=BORDER)
