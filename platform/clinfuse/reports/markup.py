"""Small HTML builders: every piece of text passes through :func:`esc`, every number through :func:`fmt`.

Numbers are printed with three decimals everywhere so a reader (and the tests) can match them to the run's
CSV and JSON files.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from clinfuse.reports.plots import to_png

DASH = "—"


class Raw(str):
    """Markup that is already safe (built here from escaped parts) and must not be escaped again."""


def esc(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return value if isinstance(value, Raw) else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (integers stay integers); missing values become a dash."""
    if value is None:
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if math.isnan(number):
        return DASH
    # Avoid "-0.000": a value that rounds to zero prints as zero whatever its sign.
    return f"{0.0 if abs(number) < 0.5 * 10**-digits else number:.{digits}f}"


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        return value
    if isinstance(value, str):
        return esc(value)
    return fmt(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None, css: str = "") -> Raw:
    """A table; string cells are escaped, numeric cells formatted, :class:`Raw` cells kept as they are."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    cls = f' class="{esc(css)}"' if css else ""
    return Raw(f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def para(text: str, css: str = "") -> Raw:
    """A paragraph of escaped text."""
    cls = f' class="{esc(css)}"' if css else ""
    return Raw(f"<p{cls}>{esc(text)}</p>")


def note(text: str) -> Raw:
    """A visible notice (e.g. a missing input file)."""
    return para(text, "note")


def missing(file: str, consequence: str) -> Raw:
    """The notice a section shows when one of the run's files is absent."""
    return note(f"Not available: {file} was not found in the run folder, so {consequence}.")


def heading(text: str, level: int = 3) -> Raw:
    """A sub-heading inside a section."""
    return Raw(f"<h{level}>{esc(text)}</h{level}>")


def compact_png(png: bytes) -> bytes:
    """The PNG quantised to a 256-colour palette when that is smaller (figures and overlays use few colours).

    Palette PNGs are lossless for line art and visually identical for blended overlays, and a third to a
    fifth of the size, which keeps a report with dozens of figures well under 10 MB.
    """
    try:
        with Image.open(io.BytesIO(png)) as picture:
            palette = picture.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
            buffer = io.BytesIO()
            palette.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError):
        return png  # not a PNG we can read: embed it as it is
    return buffer.getvalue() if buffer.tell() < len(png) else png


def image(png: bytes, alt: str, css: str = "", compact: bool = True) -> Raw:
    """A PNG embedded as a base64 data URI (the report stays one self-contained file).

    Args:
        png: the PNG's bytes.
        alt: the alternative text.
        css: a class name.
        compact: palette-compress it (figures); image evidence keeps its full colours (no banding).
    """
    data = base64.b64encode(compact_png(png) if compact else png).decode("ascii")
    cls = f' class="{esc(css)}"' if css else ""
    return Raw(f'<img{cls} alt="{esc(alt)}" src="data:image/png;base64,{data}">')


def figure(fig: Figure, alt: str, caption: str | None = None) -> Raw:
    """A matplotlib figure as an embedded PNG with an optional caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Raw(f"<figure>{image(to_png(fig), alt)}{cap}</figure>")


def section(section_id: str, title: str, parts: Iterable[str]) -> Raw:
    """A top-level report section with an ``<h2>``; parts must already be markup."""
    body = "\n".join(parts)
    return Raw(f'<section id="{esc(section_id)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>')


def details(summary: str, parts: Iterable[str]) -> Raw:
    """A collapsible block (plain HTML, no script needed)."""
    return Raw(f"<details><summary>{esc(summary)}</summary>{''.join(parts)}</details>")


def figure_png(png: bytes, alt: str, caption: str) -> Raw:
    """A PNG file's bytes as a captioned figure (patient-card panels)."""
    return Raw(f"<figure>{image(png, alt, 'overlay', compact=False)}<figcaption>{esc(caption)}</figcaption></figure>")


def top_features_table(modality: str, patient: str, features: Any, top: int = 5) -> Raw:
    """One patient's ``top`` largest |attribution| rows of a ``features_<modality>.csv`` table ("" if none)."""
    if not {"patient", "feature", "attribution"} <= set(features.columns):
        return Raw("")
    rows = features[features["patient"].astype(str) == patient]
    if rows.empty:
        return Raw("")
    ranked = rows.reindex(rows["attribution"].abs().sort_values(ascending=False).index).head(top)
    values = ranked["value"] if "value" in ranked.columns else [None] * len(ranked)
    return table(
        ["feature", "value", "attribution"],
        [(str(f), v, a) for f, v, a in zip(ranked["feature"], values, ranked["attribution"], strict=True)],
        caption=f"Top {modality} variables (|attribution|)",
    )
