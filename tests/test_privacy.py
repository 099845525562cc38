"""Pseudonymous ids and salts."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from clinfuse.privacy import load_or_create_salt, pseudonymise, scrub


def test_pseudonyms_stable_salted(tmp_path: Path) -> None:
    salt = load_or_create_salt(tmp_path / ".clinfuse" / "salt")
    assert stat.S_IMODE((tmp_path / ".clinfuse" / "salt").stat().st_mode) == 0o600
    assert load_or_create_salt(tmp_path / ".clinfuse" / "salt") == salt
    first = pseudonymise(["A1", "A2", "A1"], salt)
    assert first[0] == first[2] != first[1]
    assert all(re.fullmatch(r"P-[0-9a-f]{10}", p) for p in first)
    assert pseudonymise(["A1"], b"other")[0] != first[0]
    assert pseudonymise(["A1", "7"], None) == ["A1", "7"]
    assert "A1" not in "".join(first)


def test_scrub() -> None:
    assert scrub("patient MRN123 and MRN1234", {"MRN123", "MRN1234"}) == "patient [redacted] and [redacted]"
