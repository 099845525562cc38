"""Contract tests over every registered kind: a kind is tested by registering it (the timm way)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from clinfuse.cohort import load_cohort, synthesize_cohort
from clinfuse.config import EncoderConfig
from clinfuse.encoders import encoder_kind, list_encoders
from clinfuse.kinds import RunCache, get_kind, list_kinds

KINDS = list_kinds()


def test_builtin_kinds_are_registered() -> None:
    assert {"image", "tabular", "genomic", "signal"} <= set(KINDS)


@pytest.mark.parametrize("name", KINDS)
def test_schema_rejects_unknown_keys_and_default_encoder_fits_the_family(name: str) -> None:
    kind = get_kind(name)
    assert kind.name == name
    assert kind.default_encoder in list_encoders(kind.encoder_family)
    assert encoder_kind(kind.default_encoder) == kind.encoder_family
    with pytest.raises(ValidationError, match="extra"):
        kind.entry_model.model_validate({"type": name, "no_such_key": 1})
    assert kind.settings_model.model_validate({}) is not None


@pytest.fixture(scope="module")
def every_kind_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    modalities = {f"m_{k}": k for k in KINDS}
    return synthesize_cohort(
        tmp_path_factory.mktemp("kinds") / "coh",
        patients=20,
        spatial_dims=2,
        size=12,
        n_genes=20,
        seed=5,
        modalities=modalities,
        missing_rate=dict.fromkeys(modalities, 0.2),
    )


@pytest.mark.parametrize("name", KINDS)
def test_training_items_equal_what_the_logged_model_rebuilds(
    every_kind_cohort: Path, tmp_path: Path, name: str
) -> None:
    """``item`` (training) and ``restore(...).transform(raw)`` (the logged model) give the same inputs."""
    cohort = load_cohort(every_kind_cohort, verify_images=True)
    modality = f"m_{name}"
    data = cohort.modalities[modality]
    kind = data.kind
    settings = kind.settings_model()
    prepared = kind.prepare(data, settings, RunCache(tmp_path, image_size=[12]))
    present = np.flatnonzero(data.present)
    assert 0 < len(present) < cohort.n
    train = present[: len(present) // 2]
    fitted = kind.fit(data, prepared, train, EncoderConfig(), settings, cohort.root)
    rows = present[len(present) // 2 :]
    items = np.stack([fitted.item(int(i)).numpy() for i in rows])
    restored = kind.restore(kind.describe(data, settings), fitted.state())
    np.testing.assert_allclose(restored.transform(kind.raw(data, rows)).numpy(), items, atol=1e-5)
    absent = int(np.flatnonzero(~data.present)[0])
    assert float(np.abs(fitted.item(absent).numpy()).sum()) == 0.0
    spec = kind.encoder(modality, EncoderConfig(embed_dim=4, hidden=[8]), fitted)
    assert spec.name == kind.default_encoder_for(fitted.input_shape)
    frame = pd.DataFrame(kind.to_frame(modality, data, np.arange(cohort.n)))
    assert list(frame.columns) == kind.frame_columns(modality, kind.describe(data, settings))
    raw, found = kind.from_frame(modality, kind.describe(data, settings), frame)
    np.testing.assert_array_equal(found, data.present)
    np.testing.assert_allclose(restored.transform(raw).numpy()[-len(rows) :], items, atol=1e-5)
