"""Pseudonymous ids (keyed HMAC, collisions detected) and salts."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat
from pathlib import Path

import pytest

from clinfuse import privacy
from clinfuse.errors import ClinfuseError, PseudonymCollisionError
from clinfuse.privacy import load_or_create_salt, pseudonymise, scrub


def test_pseudonyms_stable_salted(tmp_path: Path) -> None:
    salt = load_or_create_salt(tmp_path / ".clinfuse" / "salt")
    assert stat.S_IMODE((tmp_path / ".clinfuse" / "salt").stat().st_mode) == 0o600
    assert load_or_create_salt(tmp_path / ".clinfuse" / "salt") == salt
    first = pseudonymise(["A1", "A2", "A1"], salt)
    assert first[0] == first[2] != first[1]
    assert all(re.fullmatch(r"P-[0-9a-f]{20}", p) for p in first)
    assert pseudonymise(["A1", "A2"], salt) == first[:2]  # same salt, same pseudonyms
    assert pseudonymise(["A1"], b"other")[0] != first[0]
    assert pseudonymise(["A1", "7"], None) == ["A1", "7"]
    assert "A1" not in "".join(first)


def test_pseudonym_is_hmac_keyed_by_the_salt() -> None:
    expected = hmac.new(b"key", b"A1", hashlib.sha256).hexdigest()[:20]
    assert pseudonymise(["A1"], b"key") == [f"P-{expected}"]
    # Not the former salted hash sha256(salt + id).
    assert expected != hashlib.sha256(b"keyA1").hexdigest()[:20]


def test_distinct_ids_get_distinct_pseudonyms() -> None:
    ids = [f"MRN{i:06d}" for i in range(20_000)] + [str(i) for i in range(20_000)]
    assert len(set(pseudonymise(ids, b"salt"))) == len(ids)


def test_collision_raises_without_naming_the_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    # One hex character leaves 16 pseudonyms, so 17 different ids must collide.
    monkeypatch.setattr(privacy, "_DIGEST_CHARS", 1)
    ids = [f"SECRET-{i}" for i in range(17)]
    with pytest.raises(PseudonymCollisionError) as caught:
        pseudonymise(ids, b"salt")
    assert isinstance(caught.value, ClinfuseError)
    message = str(caught.value)
    assert "\n" not in message and "same pseudonym" in message and "SECRET" not in message
    # Repeats of one id are the same patient, not a collision.
    assert pseudonymise(["SECRET-1"] * 5, b"salt") == pseudonymise(["SECRET-1"], b"salt") * 5


def test_scrub() -> None:
    assert scrub("patient MRN123 and MRN1234", {"MRN123", "MRN1234"}) == "patient [redacted] and [redacted]"
