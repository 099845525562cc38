"""The ``signal`` kind: reading, checks that name the file, fold-fitted normalisation, windows, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clinfuse.cohort import check_cohort, load_cohort, synthesize_cohort
from clinfuse.config import EncoderConfig, validate_config
from clinfuse.kinds import RunCache, get_kind
from clinfuse.kinds.signal import SignalSettings, read_recording

MODALITIES = {"clinical": "tabular", "ecg": "signal"}


@pytest.fixture
def signal_cohort(tmp_path: Path) -> Path:
    return synthesize_cohort(tmp_path / "coh", patients=24, seed=4, modalities=MODALITIES, missing_rate={"ecg": 0.2})


def _index(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "ecg.csv")


def test_synthetic_signal_cohort_is_valid_and_summarised(signal_cohort: Path) -> None:
    report = check_cohort(signal_cohort)
    assert report.ok, report.problems
    info = report.summary["modalities"]["ecg"]
    assert info["type"] == "signal" and info["channels"] == ["I", "II"]
    assert info["sampling_rates"] == {"100 Hz": info["present"]}
    assert 8.0 <= info["duration_s"]["min"] <= info["duration_s"]["max"] <= 12.0
    text = report.render()
    assert "ecg: channels I, II" in text and "ecg sampling rates: 100 Hz" in text


def _break(root: Path, row: int, how: str) -> str:
    """Damage the recording of index row ``row`` (1-based) and return its relative path."""
    index = _index(root)
    relative = index.loc[row - 1, "path"]
    path = root / relative
    array = np.load(path)
    if how == "transposed":
        np.save(path, array.T)
    elif how == "nan":
        array[0, 5] = np.nan
        np.save(path, array)
    elif how == "corrupt":
        path.write_bytes(b"not a numpy file")
    elif how == "channels":
        np.save(path, np.vstack([array, array[:1]]))
    elif how == "missing":
        path.unlink()
    return relative


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("transposed", "looks stored transposed (samples x channels)"),
        ("nan", "NaN or infinite samples"),
        ("corrupt", "cannot be read as a recording"),
        ("channels", "3 channels where cohort.yaml names 2"),
        ("missing", "recording not found"),
    ],
)
def test_broken_recording_is_one_line_naming_the_file(signal_cohort: Path, how: str, expected: str) -> None:
    relative = _break(signal_cohort, 2, how)
    report = check_cohort(signal_cohort)
    assert len(report.problems) == 1, report.problems
    line = report.problems[0]
    assert expected in line and relative in line and "ecg.csv row 2" in line
    assert "S00" not in line  # the file is named by row and path, never by patient id


def test_rate_column_missing_value_and_min_duration(signal_cohort: Path) -> None:
    index = _index(signal_cohort)
    index["fs"] = 100.0
    index.loc[3, "fs"] = np.nan
    index.to_csv(signal_cohort / "ecg.csv", index=False)
    spec = yaml.safe_load((signal_cohort / "cohort.yaml").read_text())
    entry = spec["modalities"]["ecg"]
    del entry["sampling_rate"]
    entry.update(sampling_rate_column="fs", min_duration=10.0)
    (signal_cohort / "cohort.yaml").write_text(yaml.safe_dump(spec))
    problems = check_cohort(signal_cohort).problems
    assert any("column 'fs': missing or non-positive sampling rate at row 4" in p for p in problems)
    short = [p for p in problems if "shorter than min_duration 10 s" in p]
    assert short and all("ecg.csv row" in p for p in short)


def test_rate_keys_are_exclusive(signal_cohort: Path) -> None:
    spec = yaml.safe_load((signal_cohort / "cohort.yaml").read_text())
    spec["modalities"]["ecg"]["sampling_rate_column"] = "fs"
    (signal_cohort / "cohort.yaml").write_text(yaml.safe_dump(spec))
    problems = check_cohort(signal_cohort).problems
    assert problems == [
        "cohort.yaml: key 'modalities.ecg': give exactly one of sampling_rate (Hz) or sampling_rate_column"
    ]


def test_csv_recording_reads_one_column_per_channel(tmp_path: Path) -> None:
    values = np.arange(20, dtype=float).reshape(10, 2)
    pd.DataFrame(values, columns=["I", "II"]).to_csv(tmp_path / "with_header.csv", index=False)
    pd.DataFrame(values).to_csv(tmp_path / "no_header.csv", index=False, header=False)
    for name in ("with_header.csv", "no_header.csv"):
        np.testing.assert_array_equal(read_recording(tmp_path / name), values.T)


def test_normalisation_is_fitted_on_training_patients_only(signal_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(signal_cohort)
    data = cohort.modalities["ecg"]
    kind = get_kind("signal")
    settings = SignalSettings(window=4.0)
    prepared = kind.prepare(data, settings, RunCache(tmp_path))
    present = np.flatnonzero(data.present)
    train, other = present[:8], present[8:]
    # A huge offset on patients outside the fold's training set must not move the fitted mean.
    for i in other:
        prepared["recordings"][int(i)] = prepared["recordings"][int(i)] + 1000.0
    fitted = kind.fit(data, prepared, train, EncoderConfig(), settings, cohort.root)
    expected = np.concatenate([prepared["recordings"][int(i)] for i in train], axis=1).mean(axis=1)
    np.testing.assert_allclose(fitted.mean, expected)
    assert fitted.input_shape == {"spatial_dims": 1, "in_channels": 2, "size": [400]}
    item = fitted.item(int(train[0]))
    assert item.shape == (2, 400)
    # The centre window, reproducibly; the random training window differs between draws.
    assert np.array_equal(item.numpy(), fitted.item(int(train[0])).numpy())
    draw = fitted.augmenter(0, False)
    assert draw is not None
    windows = {tuple(draw(int(train[0]))[0, :5].tolist()) for _ in range(5)}
    assert len(windows) > 1
    # A recording shorter than the window is zero-padded to the window.
    long_window = SignalSettings(window=20.0)
    long_prepared = kind.prepare(data, long_window, RunCache(tmp_path))
    assert long_prepared["padded"] == len(present)
    assert f"ecg: {len(present)} recordings shorter than the 20 s window were zero-padded" in kind.notes(
        data, long_prepared
    )
    short = kind.fit(data, long_prepared, train, EncoderConfig(), long_window, cohort.root)
    assert short.item(int(train[0])).shape == (2, 2000)
    assert float(short.item(int(train[0]))[:, -50:].abs().sum()) == 0.0
    # The logged model's path (raw file + rate) gives exactly the training path's centre window.
    raw = kind.raw(data, np.array([train[0]]))
    restored = kind.restore(kind.describe(data, settings), fitted.state())
    np.testing.assert_allclose(restored.transform(raw)[0].numpy(), item.numpy(), atol=1e-5)


def test_resampling_to_a_common_rate(signal_cohort: Path, tmp_path: Path) -> None:
    """A recording stored at 200 Hz is resampled onto the cohort's 100 Hz grid: same beats, same length in s."""
    index = _index(signal_cohort)
    index["fs"] = 100.0
    path = signal_cohort / index.loc[0, "path"]
    original = np.load(path)
    t = np.arange(original.shape[1] * 2) / 200.0
    upsampled = np.stack([np.interp(t, np.arange(original.shape[1]) / 100.0, row) for row in original])
    np.save(path, upsampled.astype(np.float32))
    index.loc[0, "fs"] = 200.0
    index.to_csv(signal_cohort / "ecg.csv", index=False)
    spec = yaml.safe_load((signal_cohort / "cohort.yaml").read_text())
    del spec["modalities"]["ecg"]["sampling_rate"]
    spec["modalities"]["ecg"]["sampling_rate_column"] = "fs"
    (signal_cohort / "cohort.yaml").write_text(yaml.safe_dump(spec))
    cohort = load_cohort(signal_cohort, verify_images=True)
    prepared = get_kind("signal").prepare(cohort.modalities["ecg"], SignalSettings(), RunCache(tmp_path))
    assert prepared["rate"] == 100.0
    first = int(np.flatnonzero(cohort.modalities["ecg"].present)[0])
    resampled = prepared["recordings"][first]
    assert abs(resampled.shape[1] - original.shape[1]) <= 1
    assert np.corrcoef(resampled[0, 10:-10], original[0, 10 : resampled.shape[1] - 10])[0, 1] > 0.98


def test_unknown_signal_setting_is_a_config_error(signal_cohort: Path) -> None:
    from clinfuse.errors import ConfigError
    from clinfuse.training.data import check_inputs

    cohort = load_cohort(signal_cohort)
    config = validate_config({"cohort": str(signal_cohort), "inputs": {"ecg": {"windw": 5}, "clinical": {"x": 1}}})
    with pytest.raises(ConfigError) as error:
        check_inputs(config, cohort)
    assert error.value.problems == [
        "config key 'inputs.clinical.x': unknown key for this kind (modality 'clinical' is a tabular modality)",
        "config key 'inputs.ecg.windw': unknown key for this kind (modality 'ecg' is a signal modality)",
    ]


@pytest.mark.slow
def test_signal_modality_end_to_end(tmp_path: Path) -> None:
    """A run with an ECG modality: trained, explained (strips and channel importance), reported, and its logged
    model rebuilds the same test predictions from the raw files."""
    from clinfuse.pipeline import run_experiment
    from clinfuse.training.inference import cohort_input_frame, ensemble_of, predict_frame

    root = synthesize_cohort(tmp_path / "coh", patients=40, seed=8, modalities=MODALITIES, weights={"ecg": 2.5})
    config = validate_config(
        {
            "name": "ecg",
            "cohort": str(root),
            "encoders": {"clinical": {"embed_dim": 4, "hidden": [8]}, "ecg": {"embed_dim": 8}},
            "inputs": {"ecg": {"window": 6}},
            "fusion": {"hidden": 8},
            "training": {"epochs": 2, "batch_size": 8},
            "evaluation": {"folds": 2, "bootstrap": 20},
            "explain": {"max_patients": 6, "saliency_patients": 2},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "log_model": False},
            "report": {"out_dir": str(tmp_path / "reports")},
            "device": "cpu",
        }
    )
    outcome = run_experiment(config, project_dir=tmp_path)
    run_dir = outcome.run_dir
    strips = sorted((run_dir / "overlays" / "ecg").glob("*.png"))
    assert len(strips) == 2
    channels = pd.read_csv(run_dir / "features_ecg.csv")
    assert set(channels["feature"]) == {"I", "II"} and np.isfinite(channels["attribution"]).all()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "ecg saliency" in html and "resampled to 100 Hz, window 6 s (600 samples)" in html
    # The logged model's path: raw .npy files and rates in, the run's own test predictions out.
    cohort = load_cohort(root)
    primary = outcome.trained[0]
    ensemble, states = ensemble_of(primary, cohort, config)
    frame = cohort_input_frame(cohort, cohort.modality_names, primary.test.index)
    assert {"ecg.path", "ecg.sampling_rate"} <= set(frame.columns)
    predicted = predict_frame(ensemble, states, frame)["prob"].to_numpy()
    written = pd.read_csv(run_dir / "predictions.csv").query("model == 'gated'")["prob"].to_numpy()
    np.testing.assert_allclose(predicted, written, atol=1e-5)
