"""Reading the text files of the real-format readers (CSV, attribute and partition lists, LFW pairs): UTF-8 only,
and a file that is not UTF-8 is an error naming the file and the line, not a ``UnicodeDecodeError``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_utf8"]


def read_utf8(path: str | os.PathLike, what: str = "file") -> str:
    """The text of ``path`` decoded as UTF-8 (a leading byte-order mark dropped).

    Bytes that are not UTF-8 raise ValueError naming the file, the line (1-based) and the byte, e.g. a list saved as
    Latin-1 or UTF-16.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset "
                         f"{error.start}); save it as UTF-8") from None
    return text.removeprefix("\ufeff")
