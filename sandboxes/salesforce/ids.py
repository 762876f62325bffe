"""Salesforce record ids: 15-char case-sensitive ids and their 18-char case-safe form.

An id is a 3-char key prefix (``001`` Account, ``006`` Opportunity, ...), a 2-char instance code,
a reserved ``0`` and a 9-char base-62 sequence number. The 18-char form appends three characters
that encode, for each 5-char chunk, which characters are upper case, so the id survives
case-insensitive systems. The API always answers with 18-char ids and accepts either form.
"""

from __future__ import annotations

import re
from functools import lru_cache

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
INSTANCE_CODE = "Kj"
SEQUENCE_DIGITS = 9
MAX_SEQUENCE = 62**SEQUENCE_DIGITS - 1

_ID_SHAPE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")


_UPPER_AS_ONE = str.maketrans(
    {
        chr(code): ("1" if chr(code).isupper() and chr(code).isascii() else "0")
        for code in range(128)
    }
)


def case_safe_suffix(id15: str) -> str:
    """The 3-char suffix that turns a 15-char id into its 18-char case-insensitive form.

    For each 5-char chunk, bit i is set when character i is upper case (A-Z); the value 0-31
    picks a character of ``ABCDEFGHIJKLMNOPQRSTUVWXYZ012345``.
    """
    bits = id15.translate(_UPPER_AS_ONE)
    return (
        SUFFIX_ALPHABET[int(bits[4::-1], 2)]
        + SUFFIX_ALPHABET[int(bits[9:4:-1], 2)]
        + SUFFIX_ALPHABET[int(bits[14:9:-1], 2)]
    )


def to_18(record_id: str) -> str:
    """The 18-char form of a 15- or 18-char id; raises ``ValueError`` for anything else."""
    if not _ID_SHAPE.match(record_id):
        raise ValueError(f"malformed id: {record_id!r}")
    id15 = record_id[:15]
    return id15 + case_safe_suffix(id15)


def normalize_id(record_id: str) -> str | None:
    """The canonical 18-char form of ``record_id``, or ``None`` when it is not a well-formed id.

    A 15-char id is case-sensitive. An 18-char id is case-insensitive: its suffix says which
    of the first 15 characters are upper case, so ``001d000000irfmaiah`` is ``001D000000IRFmaIAH``.
    """
    if not isinstance(record_id, str) or not _ID_SHAPE.match(record_id.upper()):
        return None
    if len(record_id) == 15:
        return record_id + case_safe_suffix(record_id)
    suffix = record_id[15:].upper()
    restored = []
    for position, char in enumerate(record_id[:15]):
        upper = SUFFIX_ALPHABET.index(suffix[position // 5]) >> (position % 5) & 1
        if upper and not char.isalpha():
            return None
        restored.append(char.upper() if upper else char.lower())
    return "".join(restored) + suffix


def is_valid_id(record_id: object) -> bool:
    """Whether ``record_id`` is a well-formed 15- or 18-char Salesforce id."""
    return isinstance(record_id, str) and normalize_id(record_id) is not None


_PAIRS = [first + second for first in BASE62 for second in BASE62]


def encode_base62(number: int, width: int) -> str:
    """``number`` in base 62, left-padded with ``0`` to ``width`` characters."""
    if number < 0 or number >= 62**width:
        raise ValueError(f"{number} does not fit in {width} base-62 digits")
    pairs = []
    for _ in range(width // 2):
        number, remainder = divmod(number, 3844)
        pairs.append(_PAIRS[remainder])
    head = BASE62[number] if width % 2 else ""
    return head + "".join(reversed(pairs))


@lru_cache(maxsize=65_536)
def make_id(key_prefix: str, sequence: int) -> str:
    """The 18-char id of record number ``sequence`` of the object with ``key_prefix``."""
    if len(key_prefix) != 3:
        raise ValueError(f"a key prefix has 3 characters, not {key_prefix!r}")
    id15 = key_prefix + INSTANCE_CODE + "0" + encode_base62(sequence, SEQUENCE_DIGITS)
    return id15 + case_safe_suffix(id15)


def key_prefix(record_id: str) -> str:
    """The key prefix (first three characters) of an id."""
    return record_id[:3]


def sequence_of(record_id: str) -> int:
    """The sequence number encoded in an id made by :func:`make_id`."""
    value = 0
    for char in record_id[6:15]:
        value = value * 62 + BASE62.index(char)
    return value
