"""Counter-based pseudo-random draws for the generated dataset.

Each record gets its own stream, seeded from ``(seed, kind, index)`` through splitmix64, then
advanced by a 64-bit linear congruential step whose upper 32 bits are used. Any record can be
regenerated alone, with the same values, in any process and on any Python version.
"""

from __future__ import annotations

from typing import Any

_MASK64 = (1 << 64) - 1
_MULTIPLIER = 6364136223846793005
_INCREMENT = 1442695040888963407
KINDS = ("partner", "customer", "contact", "user", "lead", "product", "opportunity", "lines",
         "deal", "prospect")  # fmt: skip


def splitmix64(value: int) -> int:
    """The splitmix64 finaliser of ``value``: a well-mixed 64-bit hash."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def stream_base(seed: int, kind: str) -> int:
    """The base value of the streams of one record kind in the dataset of ``seed``."""
    return splitmix64(seed & _MASK64) ^ splitmix64(KINDS.index(kind) + 1)


class Draw:
    """The pseudo-random stream of one record: the same inputs always give the same draws."""

    __slots__ = ("_state",)

    def __init__(self, base: int, index: int) -> None:
        """Start the stream of record ``index`` of a kind (``base`` from :func:`stream_base`)."""
        self._state = splitmix64(base ^ index)

    def below(self, bound: int) -> int:
        """An int in ``[0, bound)`` (``bound`` below 2**32)."""
        self._state = state = (self._state * _MULTIPLIER + _INCREMENT) & _MASK64
        return ((state >> 32) * bound) >> 32

    def real(self) -> float:
        """A float in ``[0, 1)``."""
        self._state = state = (self._state * _MULTIPLIER + _INCREMENT) & _MASK64
        return (state >> 32) / 4294967296.0

    def pick(self, choices: tuple[Any, ...]) -> Any:
        """One of ``choices``."""
        self._state = state = (self._state * _MULTIPLIER + _INCREMENT) & _MASK64
        return choices[((state >> 32) * len(choices)) >> 32]
