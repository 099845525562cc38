"""Peak memory and time of loading a cohort with a wide genomic CSV (issue 17: the numeric fast path).

``python bench/wide_table.py write DIR --patients 20000 --genes 2000`` writes the cohort once;
``/usr/bin/time -v python bench/wide_table.py load DIR`` loads it with :func:`clinfuse.cohort.load_cohort` and
prints the wall time and the genomic frame's bytes (the peak RSS is ``time -v``'s "Maximum resident set size").
Not part of ``make bench``: it measures one stage that ``registry_scale`` covers end to end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def write_cohort(out: Path, patients: int, genes: int, seed: int = 0) -> None:
    """A survival cohort: ``clinical.csv`` (label table, 5 columns) and ``genomic.csv`` (``genes`` columns)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = [f"P{i:07d}" for i in range(patients)]
    clinical = pd.DataFrame({"patient_id": ids, "age": rng.normal(60, 9, patients).round(1)})
    clinical["time"] = rng.exponential(3.0, patients).round(3) + 0.01
    clinical["event"] = rng.integers(0, 2, patients)
    clinical.to_csv(out / "clinical.csv", index=False)
    expression = pd.DataFrame(
        np.expm1(rng.normal(2.0, 1.0, (patients, genes))).round(3), columns=[f"g{j:04d}" for j in range(genes)]
    )
    expression.insert(0, "patient_id", ids)
    expression.to_csv(out / "genomic.csv", index=False)
    spec = {
        "name": "wide",
        "id_column": "patient_id",
        "label": {"table": "clinical.csv", "task": "survival", "time_column": "time", "event_column": "event"},
        "modalities": {
            "clinical": {"type": "tabular", "table": "clinical.csv"},
            "genomic": {"type": "genomic", "table": "genomic.csv"},
        },
    }
    (out / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def main() -> None:
    """Write or load the cohort (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["write", "load"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2_000)
    args = parser.parse_args()
    if args.action == "write":
        write_cohort(args.folder, args.patients, args.genes)
        return
    from clinfuse.cohort import load_cohort

    start = time.perf_counter()
    cohort = load_cohort(args.folder)
    frame = cohort.modalities["genomic"].frame
    assert frame is not None
    print(
        f"loaded {cohort.n} patients in {time.perf_counter() - start:.1f} s; genomic frame "
        f"{frame.shape} {sorted({str(t) for t in frame.dtypes})} {frame.memory_usage(deep=False).sum() / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
