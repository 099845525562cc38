"""A generator of small, internally consistent run folders (the "Training outputs" contract) for report tests.

``write_run_folder`` is reusable by any test that needs a finished run without training one: its
contributions satisfy efficiency (f_x − f_empty = Σφ, absent modality → φ = 0), its metrics are computed
from its predictions, and its modality summary from its contributions.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from clinfuse.config import EncoderConfig, ExperimentConfig, config_to_dict
from clinfuse.explain.saliency import save_overlay

MODALITIES = ("imaging", "clinical", "genomic")
CLINICAL = ("age", "sex", "bmi", "smoking", "tumour_grade", "psa")
GENES = ("TP53", "BRCA1", "EGFR", "KRAS", "MYC", "PTEN", "ERBB2", "CDKN2A")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _presence(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    present = rng.random((n, m)) < 0.8
    present[~present.any(axis=1), 1] = True  # every patient has at least one modality (clinical)
    return present


def _contributions(rng, patients, present, task, classes) -> tuple[pd.DataFrame, np.ndarray]:
    n, m = present.shape
    phi = rng.normal(0.0, [0.9, 0.6, 0.4][:m], size=(n, m)) * present
    f_empty = np.full(n, -0.2)
    f_x = f_empty + phi.sum(axis=1)
    frame = pd.DataFrame({"patient": patients})
    if task == "multiclass":
        label_idx = rng.integers(0, len(classes), n)
        pred_idx = np.where(rng.random(n) < 0.7, label_idx, (label_idx + 1) % len(classes))
        prob = _sigmoid(f_x)
    elif task == "survival":
        label_idx = (rng.random(n) < _sigmoid(1.5 * f_x)).astype(int)
        pred_idx = label_idx
        prob = f_x
    else:
        label_idx = (rng.random(n) < _sigmoid(1.5 * f_x)).astype(int)
        prob = _sigmoid(f_x)
        pred_idx = (prob >= 0.5).astype(int)
    frame["label"] = [classes[k] for k in label_idx]
    frame["prob"], frame["f_x"], frame["f_empty"] = prob, f_x, f_empty
    for j, name in enumerate(MODALITIES[:m]):
        frame[f"phi_{name}"] = phi[:, j]
    gates = rng.uniform(0.05, 0.95, size=(n, m)) * present
    for j, name in enumerate(MODALITIES[:m]):
        frame[f"gate_{name}"] = gates[:, j]
    for j, name in enumerate(MODALITIES[:m]):
        frame[f"present_{name}"] = present[:, j]
    if task == "multiclass":
        frame["explained_class"] = [classes[k] for k in pred_idx]
    return frame, pred_idx


def _summary(frame: pd.DataFrame, modalities: list[str], classes: list[str], layout: str) -> dict:
    """modality_summary.json as clinfuse.explain writes it (``layout="explain"``) or in the brief's layout."""

    def block(rows: pd.DataFrame) -> dict:
        abs_means = {m: float(rows[f"phi_{m}"].abs().mean()) for m in modalities}
        total = sum(abs_means.values()) or 1.0
        stats = {
            "mean_phi": {m: float(rows[f"phi_{m}"].mean()) for m in modalities},
            "mean_abs_phi": abs_means,
            "share": {m: abs_means[m] / total for m in modalities},
        }
        if layout == "explain":
            return {"n": len(rows), **stats}
        return {m: {stat: values[m] for stat, values in stats.items()} for m in modalities}

    by_class = {c: block(frame[frame["label"] == c]) for c in classes if (frame["label"] == c).any()}
    mean_phi = {m: float(frame[f"phi_{m}"].mean()) for m in modalities}
    off = [[0.0 if i == j else 0.01 * (i + j + 1) for j in range(len(modalities))] for i in range(len(modalities))]
    for i, m in enumerate(modalities):
        off[i][i] = mean_phi[m] - sum(off[i])  # SHAP convention: each row sums to the modality's mean phi
    n_present = {m: int(frame[f"present_{m}"].sum()) for m in modalities}
    if layout == "explain":
        return {
            "modalities": modalities,
            "n_patients": len(frame),
            "n_present": n_present,
            "overall": block(frame),
            "by_true_class": by_class,
            "interactions": {"modalities": modalities, "mean": off},
        }
    nested = {a: {b: off[i][j] for j, b in enumerate(modalities)} for i, a in enumerate(modalities)}
    return {
        "overall": block(frame),
        "per_true_class": by_class,
        "per_predicted_class": {},
        "interactions": nested,
        "n_present": n_present,
    }


def _metrics(label: np.ndarray, prob: np.ndarray, task: str) -> dict[str, float]:
    if task == "binary":
        return {
            "auroc": float(roc_auc_score(label, prob)),
            "auprc": float(average_precision_score(label, prob)),
            "brier": float(brier_score_loss(label, prob)),
        }
    if task == "survival":
        return {"c_index": 0.7123, "uno_c": 0.7012, "td_auc": 0.7345, "ibs": 0.1567}
    return {"macro_auroc": 0.6789, "balanced_accuracy": 0.5432}


def write_run_folder(
    root: Path,
    task: str = "binary",
    n: int = 48,
    n_modalities: int = 3,
    omit: Iterable[str] = (),
    seed: int = 0,
    summary_layout: str = "explain",
) -> Path:
    """Write a small, consistent run folder under ``root`` and return its path.

    Args:
        root: parent folder (e.g. ``tmp_path``).
        task: ``binary``, ``multiclass`` or ``survival``.
        n: patients in the cohort.
        n_modalities: how many of imaging, clinical, genomic the run uses (in that order).
        omit: file or folder names to leave out (e.g. ``"comparison.csv"``, ``"overlays"``, ``"features"``).
        seed: random seed of the synthetic numbers.
        summary_layout: ``explain`` (as clinfuse.explain writes modality_summary.json) or ``brief``
            (modality-major blocks, ``per_true_class``, nested interactions).
    """
    rng = np.random.default_rng(seed)
    modalities = list(MODALITIES[:n_modalities])
    classes = {
        "binary": ["benign", "malignant"],
        "multiclass": ["low", "mid", "high"],
        "survival": ["censored", "event"],
    }[task]
    run_dir = root / "reports" / "demo-exp" / "run0123abcd"
    run_dir.mkdir(parents=True)
    patients = [f"px-{rng.integers(16**8):08x}" for _ in range(n)]
    split = np.where(np.arange(n) % 4 == 0, "test", "train")
    fold = np.where(split == "test", "", (np.arange(n) % 3).astype(str))
    pd.DataFrame({"patient": patients, "split": split, "fold": fold}).to_csv(run_dir / "splits.csv", index=False)

    present = _presence(rng, n, n_modalities)
    test = split == "test"
    frame, pred_idx = _contributions(
        rng, [p for p, t in zip(patients, test, strict=True) if t], present[test], task, classes
    )
    frame.to_csv(run_dir / "contributions.csv", index=False)
    label_idx = frame["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    predictions = pd.DataFrame({"patient": frame["patient"], "fold": "test"})
    if task == "survival":  # as clinfuse.training.evaluate.predictions_frame writes it
        predictions["time"] = rng.exponential(5.0, len(frame)).round(2)
        predictions["event"] = label_idx
    else:
        predictions["label"] = frame["label"]
    if task == "binary":
        predictions["prob"] = frame["prob"]
    elif task == "multiclass":
        logits = rng.normal(size=(len(frame), len(classes)))
        logits[np.arange(len(frame)), pred_idx] += 2.0
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        for k, name in enumerate(classes):
            predictions[f"prob_{name}"] = probs[:, k]
    else:
        predictions["risk"] = frame["f_x"]
    predictions["prediction"] = [classes[k] for k in pred_idx]
    predictions.to_csv(run_dir / "predictions.csv", index=False)

    test_metrics = _metrics(label_idx, frame["prob"].to_numpy(), task)
    folds = [{k: v - 0.02 * (i - 1) for k, v in test_metrics.items()} for i in range(3)]
    entry = {
        "kind": "fusion",
        "folds": folds,
        "fold_mean": {k: float(np.mean([f[k] for f in folds])) for k in test_metrics},
        "fold_sd": {k: float(np.std([f[k] for f in folds], ddof=1)) for k in test_metrics},
        "test": test_metrics,
        "test_ci": {k: [v - 0.1, min(1.0, v + 0.1)] for k, v in test_metrics.items()},
    }
    metrics = {"gated": entry}
    headline = next(iter(test_metrics))
    rows = []
    best_unimodal = modalities[0]
    for i, (model, kind) in enumerate(
        [("gated", "fusion"), ("concat", "fusion"), *((m, "unimodal") for m in modalities)]
    ):
        shifted = {k: v if model == "gated" else v - 0.03 * (i + 1) for k, v in test_metrics.items()}
        if model != "gated":
            metrics[model] = {"kind": kind, "test": shifted}
        value = shifted[headline]
        p = np.nan if model == best_unimodal else 0.0123 * (i + 1)
        diff = np.nan if model == best_unimodal else value - (test_metrics[headline] - 0.06)
        rows.append((model, kind, headline, value, value - 0.1, value + 0.1, value, 0.02, best_unimodal, diff, p))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    columns = [
        "model",
        "kind",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "fold_mean",
        "fold_sd",
        "best_unimodal",
        "diff_vs_best_unimodal",
        "p_vs_best_unimodal",
    ]
    pd.DataFrame(rows, columns=columns).to_csv(run_dir / "comparison.csv", index=False)
    val = "val_c_index" if task == "survival" else "val_auroc"
    history = [
        (
            model,
            f,
            e,
            0.7 * np.exp(-e / (6 if model == "gated" else 4)) + 0.02 * f,
            0.5 + 0.01 * e,
            (0.6 if model == "gated" else 0.55) + 0.02 * e,
        )
        for model in ("gated", "concat")
        for f in range(3)
        for e in range(1, 11)
    ]
    pd.DataFrame(history, columns=["model", "fold", "epoch", "train_loss", "val_auprc", val]).to_csv(
        run_dir / "history.csv", index=False
    )
    summary = _summary(frame, modalities, classes, summary_layout)
    (run_dir / "modality_summary.json").write_text(json.dumps(summary, indent=2))

    feature_sets = {"clinical": CLINICAL, "genomic": GENES}
    for modality, names in feature_sets.items():
        if modality not in modalities:
            continue
        has = frame[frame[f"present_{modality}"]]["patient"]
        feats = [(p, f, round(float(rng.normal(50, 10)), 2), float(rng.normal(0, 0.3))) for p in has for f in names]
        pd.DataFrame(feats, columns=["patient", "feature", "value", "attribution"]).to_csv(
            run_dir / f"features_{modality}.csv", index=False
        )
    if "imaging" in modalities:
        # Real overlays (as the image kind writes them): a 16^3 volume with a blob the saliency peaks on.
        zz, yy, xx = np.mgrid[0:16, 0:16, 0:16]
        volume = np.exp(-((zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2) / 40.0)
        for patient in frame.loc[frame["present_imaging"], "patient"].head(3):
            centre = rng.integers(4, 12, 3)
            heat = np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / 6.0)
            save_overlay(volume, heat, run_dir / "overlays" / "imaging" / f"{patient}.png", f"{patient}: imaging")
    # As a real run writes it: the cohort resolved to an absolute path inside the project (``root``), and
    # every encoder block with every field of EncoderConfig; one file outside the project.
    encoders = {m: EncoderConfig(embed_dim=16) for m in modalities}
    if "genomic" in encoders:
        encoders["genomic"] = EncoderConfig(top_k_genes=100, gene_groups=Path("/opt/shared/pathways/groups.csv"))
    config = ExperimentConfig(
        name="demo-exp", cohort=(root / "cohorts" / "demo").resolve(), modalities=modalities, encoders=encoders, seed=7
    )
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    exclusions = [{"what": "patient rows", "reason": "label missing", "count": 2}]
    run_info = {
        "run_id": "run0123abcd",
        "experiment": "demo-exp",
        "run_name": "gated-demo",
        "cohort_name": "demo",
        "cohort_hash": "ab" * 32,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "versions": {
            "clinfuse": "0.1.0",
            "torch": "2.13.0",
            "monai": "1.6.1",
            "shap": "0.51.0",
            "mlflow": "3.17.0",
            "python": "3.12.3",
        },
        "seed": 7,
        "device": "cpu",
        "task": task,
        "classes": classes,
        "modalities": modalities,
        "modality_kinds": {
            m: k for m, k in zip(MODALITIES, ("image", "tabular", "genomic"), strict=True) if m in modalities
        },
        "model_name": "gated",
        "started": "2025-01-01T12:00:00",
        "exclusions": exclusions,
    }
    (run_dir / "run_info.json").write_text(json.dumps(run_info, indent=2))
    overlap: dict[str, int] = {}
    for row in present:
        key = "+".join(m for m, p in zip(modalities, row, strict=True) if p)
        overlap[key] = overlap.get(key, 0) + 1
    cohort_summary = {
        "n_patients": n,
        "label_counts": {
            c: int(v)
            for c, v in zip(classes, np.bincount(rng.integers(0, len(classes), n), minlength=len(classes)), strict=True)
        },
        "modality_counts": {m: int(present[:, j].sum()) for j, m in enumerate(modalities)},
        "modality_overlap": overlap,
        "missing_per_column": {"clinical": {"bmi": 3, "smoking": 5, "age": 0}} if "clinical" in modalities else {},
        "image_shapes": {"imaging": [64, 64]} if "imaging" in modalities else {},
        "exclusions": exclusions,
    }
    (run_dir / "cohort_summary.json").write_text(json.dumps(cohort_summary, indent=2))

    for name in omit:
        if name == "features":
            for file in run_dir.glob("features_*.csv"):
                file.unlink()
        elif (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
        else:
            (run_dir / name).unlink(missing_ok=True)
    return run_dir


class _ReportParser(HTMLParser):
    """Collects sections, tables (with their css class and section), images and scripts of a report."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[str]] = {}  # id -> h2 texts
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self.texts: dict[str, list[str]] = {}
        self._section: str | None = None
        self._cell: list[str] | None = None
        self._h2: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "section":
            self._section = attr.get("id") or ""
            self.sections[self._section] = []
        elif tag == "h2":
            self._h2 = []
        elif tag == "table":
            self.tables.append({"css": attr.get("class") or "", "section": self._section, "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attr.get("src") or "")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "h2" and self._h2 is not None:
            self.sections[self._section or ""].append("".join(self._h2).strip())
            self._h2 = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._section is not None:
            self.texts.setdefault(self._section, []).append(data)
        for sink in (self._cell, self._h2):
            if sink is not None:
                sink.append(data)

    def table(self, css: str) -> list[list[str]]:
        """Rows (header first) of the first table with this css class."""
        return next(t["rows"] for t in self.tables if t["css"] == css)

    def section_text(self, section_id: str) -> str:
        """All text inside one section, whitespace-joined."""
        return " ".join(self.texts.get(section_id, []))

    @property
    def page_text(self) -> str:
        return " ".join(self.text)


def parse_report(path: Path) -> _ReportParser:
    """Parse a written report with the standard library's HTML parser."""
    parser = _ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A complete binary run folder with three modalities (fresh per test: tests may edit it)."""
    return write_run_folder(tmp_path)


@pytest.fixture
def make_run_folder(tmp_path: Path) -> Callable[..., Path]:
    """``write_run_folder`` into a fresh sub-folder of ``tmp_path`` per call."""
    counter = itertools.count()
    return lambda **kwargs: write_run_folder(tmp_path / f"run{next(counter)}", **kwargs)


@pytest.fixture(scope="session")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _ReportParser]:
    """A complete binary run folder and its report, built once for the tests that only read them."""
    from clinfuse.reports import build_report

    run_dir = write_run_folder(tmp_path_factory.mktemp("built"))
    return run_dir, parse_report(build_report(run_dir))


@pytest.fixture
def parse() -> Callable[[Path], _ReportParser]:
    """The report parser, for tests that build their own report."""
    return parse_report
