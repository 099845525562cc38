"""The dataset schema clinfuse gives MLflow equals MLflow's own inference (which tests every cell in Python)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.types.utils import _infer_schema

from clinfuse.tracking.log import _schema


def test_schema_matches_mlflow_inference_including_required_columns() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)).astype(np.float32), columns=["g1", "g2", "g3"])
    frame["age"] = rng.normal(60, 9, 40)
    frame.loc[5, "age"] = np.nan
    frame["sex"] = pd.Series(rng.choice(["F", "M"], 40), dtype=object)
    frame.loc[7, "sex"] = None
    schema = _schema(frame)
    assert schema == _infer_schema(frame)
    assert [c.required for c in schema.inputs] == [True, True, True, False, False]
    assert [c.type.name for c in schema.inputs][:4] == ["float", "float", "float", "double"]
