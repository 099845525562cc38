"""Benchmark: ``clinfuse cohort check`` speed and peak memory on a 1,000-patient 3D cohort.

The cohort is synthesised first (timed apart); the check runs in a fresh interpreter so that its peak resident
memory (``ru_maxrss``) is the check's own. The check opens every table and every volume, as the CLI does.

Run: ``python bench/cohort_check.py [--patients 1000] [--size 32]`` (prints JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import run_in_child

from clinfuse.cohort.synthetic import synthesize_cohort


def _check(path: str) -> dict[str, Any]:
    """Child side: run the check and report its problems count and time."""
    from clinfuse.cohort import check_cohort

    start = time.perf_counter()
    report = check_cohort(path, folds=5)
    return {"check_seconds": time.perf_counter() - start, "problems": len(report.problems)}


def benchmark_cohort_check(patients: int = 1000, size: int = 32, seed: int = 0) -> dict[str, Any]:
    """Patients/s and peak RSS of ``check_cohort`` on a synthetic 3D cohort of ``patients`` volumes ``size``^3.

    Args:
        patients: patients in the synthetic cohort (every one has a volume).
        size: volume side in voxels.
        seed: seeds the cohort.
    """
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = synthesize_cohort(Path(tmp) / "cohort", patients=patients, spatial_dims=3, size=size, seed=seed)
        synth_seconds = time.perf_counter() - start
        child = run_in_child("cohort_check", "_check", path=str(root))
        baseline = run_in_child("cohort_check", "_imports_only")["peak_rss_mib"]
    return {
        "patients": patients,
        "volume": f"{size}^3",
        "synthesis_seconds": synth_seconds,
        "check_seconds": child["check_seconds"],
        "check_patients_per_s": patients / child["check_seconds"],
        "check_problems": child["problems"],
        "check_peak_rss_mib": child["peak_rss_mib"],
        "import_only_peak_rss_mib": baseline,
    }


def _imports_only() -> dict[str, Any]:
    """Child side: the interpreter's footprint after importing the check (the fixed cost)."""
    from clinfuse.cohort import check_cohort  # noqa: F401  (the import is the measured work)

    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(benchmark_cohort_check(args.patients, args.size), indent=2))


if __name__ == "__main__":
    main()
