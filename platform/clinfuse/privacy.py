"""Pseudonymous patient ids and identifier scrubbing.

Outputs (splits, predictions, contributions, reports) carry ``P-`` ids derived with HMAC-SHA256 keyed by the
project's salt file, so the same patient keeps the same pseudonym across runs that share a salt, and without
the key the raw id cannot be recovered nor a guessed id confirmed. Identifier columns never reach outputs at
all; :func:`scrub` is the last line of defence for text.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from clinfuse.errors import ClinfuseError, PseudonymCollisionError

_SALT_BYTES = 32
# 20 hex characters = 80 bits: among n ids the chance of any shared pseudonym is about n^2 / 2^81.
_DIGEST_CHARS = 20


def pseudonymise(ids: Sequence[str], salt: bytes | None) -> list[str]:
    """Map raw patient ids to stable pseudonyms.

    A pseudonym is ``P-`` and the first 20 hex characters (80 bits) of ``HMAC-SHA256(key=salt, msg=id)``. For
    10^7 patients the chance that any two share one is about (10^7)^2 / 2^81 = 4e-11; if it happens anyway the
    ids are not merged silently: :class:`PseudonymCollisionError` is raised.

    Args:
        ids: raw patient ids (the same id may repeat; it gets the same pseudonym).
        salt: secret key (see :func:`load_or_create_salt`); ``None`` returns the ids unchanged, for data that
            is not sensitive (synthetic or public cohorts).

    Returns:
        One pseudonym per id, in the same order.

    Raises:
        PseudonymCollisionError: two different ids map to the same pseudonym (the message names neither).
    """
    raw = [str(i) for i in ids]
    if salt is None:
        return raw
    pseudonyms = ["P-" + hmac.new(salt, i.encode("utf-8"), hashlib.sha256).hexdigest()[:_DIGEST_CHARS] for i in raw]
    if len(set(pseudonyms)) != len(set(raw)):
        raise PseudonymCollisionError(
            "two different patient ids got the same pseudonym; delete the salt file to draw a new salt "
            "(pseudonyms of earlier runs will change)"
        )
    return pseudonyms


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
