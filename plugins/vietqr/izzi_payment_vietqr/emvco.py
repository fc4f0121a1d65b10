"""The VietQR payload: an EMVCo merchant-presented QR string (NAPAS profile) for a bank transfer.

Each field is ``ID(2) + LEN(2) + VALUE``; the last is the CRC, ``6304`` + 4 hex digits of
CRC-16/CCITT-FALSE over everything before them, ``6304`` included::

    00 02 01                        payload format indicator
    01 02 12                        point of initiation: 12 dynamic (amount set), 11 static
    38 ..                           merchant account information (NAPAS)
       00 10 A000000727                 GUID
       01 ..                            beneficiary organization
          00 06 <bank BIN>                  acquirer
          01 .. <account number>            merchant (the account)
       02 08 QRIBFTTA                   service: transfer to an account
    53 03 704                       currency (VND)
    54 .. <amount>                  integer VND
    58 02 VN                        country
    62 .. 08 .. <purpose>           additional data: purpose of transaction
    63 04 <CRC>
"""

from __future__ import annotations

import binascii
import re

__all__ = ["crc16", "crc_ok", "parse", "vietqr_payload"]

NAPAS_GUID = "A000000727"
TRANSFER_TO_ACCOUNT = "QRIBFTTA"
PURPOSE_MAX = 25  # what banks accept in a transfer's description through VietQR

BIN_FORMAT = re.compile(r"\d{6}")
ACCOUNT_FORMAT = re.compile(r"[0-9A-Za-z]{1,19}")
_PURPOSE = re.compile(r"[\x20-\x7e]*")


def crc16(data: str) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) as 4 uppercase hex digits."""
    return f"{binascii.crc_hqx(data.encode('ascii'), 0xFFFF):04X}"


def tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"field {tag} is {len(value)} characters long; at most 99 fit")
    return f"{tag}{len(value):02d}{value}"


def vietqr_payload(bank_bin: str, account: str, amount: int | None = None, purpose: str | None = None) -> str:
    """The VietQR string for a transfer to ``account`` at the bank of ``bank_bin``: dynamic when an
    ``amount`` (VND) is set, with ``purpose`` as the transfer's description. Raises ``ValueError``."""
    if not BIN_FORMAT.fullmatch(bank_bin):
        raise ValueError(f"bank BIN must be 6 digits, got {bank_bin!r}")
    if not ACCOUNT_FORMAT.fullmatch(account):
        raise ValueError(f"account number must be 1 to 19 digits or letters, got {account!r}")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0):
        raise ValueError(f"amount must be a positive whole number of VND, got {amount!r}")
    if amount is not None and len(str(amount)) > 13:
        raise ValueError(f"amount {amount} has more than the 13 digits the field holds")
    if purpose is not None and (len(purpose) > PURPOSE_MAX or not _PURPOSE.fullmatch(purpose)):
        raise ValueError(f"purpose must be at most {PURPOSE_MAX} printable ASCII characters, got {purpose!r}")
    beneficiary = tlv("00", bank_bin) + tlv("01", account)
    merchant = tlv("00", NAPAS_GUID) + tlv("01", beneficiary) + tlv("02", TRANSFER_TO_ACCOUNT)
    payload = tlv("00", "01") + tlv("01", "11" if amount is None else "12") + tlv("38", merchant) + tlv("53", "704")
    if amount is not None:
        payload += tlv("54", str(amount))
    payload += tlv("58", "VN")
    if purpose:
        payload += tlv("62", tlv("08", purpose))
    payload += "6304"
    return payload + crc16(payload)


def parse(data: str) -> dict[str, str]:
    """The fields of one TLV level, by ID (parse a template's value again for its sub-fields).
    Raises ``ValueError`` on a truncated or malformed string."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(data):
        tag, size = data[at : at + 2], data[at + 2 : at + 4]
        if len(size) < 2 or not (tag.isdigit() and size.isdigit()):
            raise ValueError(f"malformed field at offset {at}: {data[at : at + 4]!r}")
        value = data[at + 4 : at + 4 + int(size)]
        if len(value) < int(size):
            raise ValueError(f"field {tag} at offset {at} is cut short")
        if tag in fields:
            raise ValueError(f"field {tag} appears twice")
        fields[tag] = value
        at += 4 + int(size)
    return fields


def crc_ok(payload: str) -> bool:
    """Whether ``payload`` ends with a ``63`` field whose CRC matches the rest."""
    return payload.isascii() and payload[-8:-4] == "6304" and payload[-4:] == crc16(payload[:-4])
