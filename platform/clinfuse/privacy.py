"""Pseudonymous patient ids and identifier scrubbing.

Outputs (splits, predictions, contributions, reports) carry ``P-`` ids derived with a salted SHA-256, so the
same patient keeps the same pseudonym across runs that share a salt, and the raw id cannot be recovered
without it. Identifier columns never reach outputs at all; :func:`scrub` is the last line of defence for text.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from clinfuse.errors import ClinfuseError

_SALT_BYTES = 32
_DIGEST_CHARS = 10


def pseudonymise(ids: Sequence[str], salt: bytes | None) -> list[str]:
    """Map raw patient ids to stable pseudonyms.

    Args:
        ids: raw patient ids.
        salt: secret salt (see :func:`load_or_create_salt`); ``None`` returns the ids unchanged, for data that
            is not sensitive (synthetic or public cohorts).

    Returns:
        ``P-`` followed by 10 hex characters of ``sha256(salt + id)`` per id, in the same order.
    """
    if salt is None:
        return [str(i) for i in ids]
    return ["P-" + hashlib.sha256(salt + str(i).encode("utf-8")).hexdigest()[:_DIGEST_CHARS] for i in ids]


def load_or_create_salt(path: str | Path) -> bytes:
    """Read the salt file, creating it (random bytes, permissions 0600) when absent.

    Args:
        path: salt file, e.g. ``.clinfuse/salt``; keep it out of version control.
    """
    path = Path(path)
    if path.is_file():
        salt = path.read_bytes()
        if not salt:
            raise ClinfuseError(f"{path}: salt file is empty; delete it to create a new one")
        return salt
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(_SALT_BYTES)
    # Created with 0600 from the start so the salt is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(salt)
    return salt


def scrub(text: str, identifiers: Iterable[str], replacement: str = "[redacted]") -> str:
    """Replace every occurrence of an identifier value in ``text`` (longest first, so prefixes cannot leak).

    Args:
        text: any text about to be written or logged.
        identifiers: raw ids and identifier-column values (``Cohort.identifier_values``).
        replacement: what replaces each occurrence.
    """
    for value in sorted({str(v) for v in identifiers if str(v)}, key=len, reverse=True):
        text = text.replace(value, replacement)
    return text
