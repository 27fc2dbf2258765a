"""The one error type every wire protocol raises for bad input."""

from __future__ import annotations


class FrameError(ValueError):
    """A frame that cannot be decoded: malformed, truncated, wrong checksum, oversize or garbage.

    Decoders raise only this for bad bytes, never anything else, and change no state.
    """
