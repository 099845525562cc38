"""User-facing errors: each says what is wrong, where, and how to fix it.

The CLI turns any :class:`ClinfuseError` into one line per problem on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class ClinfuseError(Exception):
    """Base class of every error a user can fix (bad data, bad config, bad arguments).

    Args:
        problems: one or more one-line messages, each naming the file/row/column/key and the fix.
    """

    def __init__(self, *problems: str) -> None:
        self.problems: list[str] = [p for p in problems if p] or ["unknown error"]
        super().__init__("\n".join(self.problems))

    @classmethod
    def from_list(cls, problems: Iterable[str]) -> ClinfuseError:
        """Build one error carrying several problems."""
        return cls(*list(problems))


class CohortError(ClinfuseError):
    """The cohort folder, its cohort.yaml, a table or an image is invalid."""


class ConfigError(ClinfuseError):
    """The experiment config (YAML or ``--set`` overrides) is invalid."""


class RunError(ClinfuseError):
    """A run id, MLflow store or output folder cannot be used."""


class PseudonymCollisionError(ClinfuseError):
    """Two different patient ids were given the same pseudonym (the salt cannot keep them apart)."""


def unknown_name(what: str, name: object, choices: Iterable[str]) -> str:
    """``unknown <what> 'x'; choose one of: a, b (did you mean 'a'?)``: how every registry lookup answers.

    Args:
        what: what was looked up (``modality kind``, ``encoder``, ``fusion method``...).
        name: the name that was not found.
        choices: the registered names.
    """
    import difflib

    options = sorted(choices)
    close = difflib.get_close_matches(str(name), options, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}; choose one of: {', '.join(options)}{hint}"
