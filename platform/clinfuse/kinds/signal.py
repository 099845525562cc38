"""The ``signal`` kind: regularly sampled multichannel recordings (ECG, EEG, bedside vitals).

An index table maps each patient to one file: ``.npy`` shaped ``(channels, samples)`` or ``.csv`` with one
column per channel and one row per sample. Recordings may differ in length and sampling rate. For a run every
recording is resampled to one rate (``scipy.signal.resample_poly``), normalised per channel with means and
standard deviations fitted on the fold's training patients, and cut to a fixed window: a random crop in
training, the centre at evaluation; shorter recordings are padded (and counted). The default encoder is a
small 1D CNN; MONAI networks serve with ``spatial_dims=1``. Explanations occlude time windows (a saliency
strip under the trace) and whole channels (per-channel importance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import Field, model_validator
from scipy.signal import resample_poly

from clinfuse.cohort.load import CohortReader, ModalityData
from clinfuse.cohort.tables import rows_text, to_numeric
from clinfuse.config import EncoderConfig
from clinfuse.errors import CohortError, ConfigError, RunError
from clinfuse.explain.features import ModalityLogit
from clinfuse.kinds.base import (
    ExplainContext,
    Fitted,
    KindSettings,
    LoadedModality,
    Mismatch,
    ModalityEntry,
    ModalityKind,
    RunCache,
    SynthResult,
    blank,
)
from clinfuse.kinds.registry import register_kind
from clinfuse.logs import steps

_SUFFIXES = (".npy", ".csv")
_SEGMENTS = 24  # time windows occluded for the saliency strip
_MAX_AUTO_WINDOW_S = 60.0


class SignalEntry(ModalityEntry):
    """A signal modality: an index table mapping each patient to one recording file.

    Args:
        type: ``signal``.
        index: CSV or Parquet with the id column and ``path_column``.
        path_column: column holding paths (``.npy`` or ``.csv``) relative to the cohort folder.
        sampling_rate: samples per second of every recording (Hz).
        sampling_rate_column: instead of ``sampling_rate``, a column of the index giving each file's rate.
        channels: optional channel names (default ``ch0, ch1, ...``); their number is checked in every file.
        min_duration: optional shortest acceptable recording in seconds (``cohort check`` rejects shorter ones).
    """

    type: Literal["signal"]
    index: str
    path_column: str = "path"
    sampling_rate: float | None = Field(None, gt=0)
    sampling_rate_column: str | None = None
    channels: list[str] | None = None
    min_duration: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_rate(self) -> SignalEntry:
        if (self.sampling_rate is None) == (self.sampling_rate_column is None):
            raise ValueError("give exactly one of sampling_rate (Hz) or sampling_rate_column")
        return self


class SignalSettings(KindSettings):
    """``inputs.<modality>`` of a signal modality in the experiment config.

    Args:
        sampling_rate: rate every recording is resampled to (Hz); ``auto`` = the cohort's most common rate.
        window: seconds the model sees; ``auto`` = the median recording duration (at most 60 s).
    """

    sampling_rate: float | Literal["auto"] = "auto"
    window: float | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _positive(self) -> SignalSettings:
        for key in ("sampling_rate", "window"):
            value = getattr(self, key)
            if value != "auto" and float(value) <= 0:
                raise ValueError(f"{key} must be positive or auto")
        return self


def read_recording(path: Path) -> np.ndarray:
    """A recording as float64 ``(channels, samples)``; a CSV has one column per channel, one row per sample."""
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        array = np.asarray(array, dtype=np.float64)
        return array[None, :] if array.ndim == 1 else array
    table = pd.read_csv(path, dtype=str)
    try:
        [float(c) for c in table.columns]
        table = pd.read_csv(path, dtype=str, header=None)  # no header row: the first row is a sample
    except ValueError:
        pass
    return table.astype(np.float64).to_numpy().T


def resample(array: np.ndarray, rate: float, target: float) -> np.ndarray:
    """``(channels, samples)`` resampled from ``rate`` to ``target`` Hz (polyphase, anti-aliased)."""
    if abs(rate - target) < 1e-9:
        return array
    ratio = Fraction(target / rate).limit_denominator(1000)
    return resample_poly(array, ratio.numerator, ratio.denominator, axis=-1)


def _inspect(path: Path, where: str, channels: int | None) -> tuple[tuple[int, int] | None, list[str]]:
    """``(channels, samples)`` of a recording file, or the problems that make it unusable."""
    try:
        array = read_recording(path)
    except Exception as exc:  # numpy, pandas and the filesystem raise their own types for corrupt files
        return None, [f"{where}: cannot be read as a recording ({type(exc).__name__}); re-export it as .npy or .csv"]
    if array.ndim != 2 or array.size == 0:
        return None, [f"{where}: expected a (channels, samples) array, got shape {array.shape}; re-export it"]
    if path.suffix.lower() == ".npy" and array.shape[0] > array.shape[1]:
        return None, [
            f"{where}: shape {array.shape} looks stored transposed (samples x channels); save it as (channels, samples)"
        ]
    if path.suffix.lower() == ".csv" and array.shape[0] > array.shape[1]:
        return None, [
            f"{where}: {array.shape[0]} columns but {array.shape[1]} rows looks transposed; write one column per "
            "channel and one row per sample"
        ]
    if channels is not None and array.shape[0] != channels:
        return None, [
            f"{where}: {array.shape[0]} channels where cohort.yaml names {channels}; fix the file or channels"
        ]
    bad = int((~np.isfinite(array)).sum())
    if bad:
        return None, [f"{where}: {bad} NaN or infinite samples; interpolate or remove them and re-export"]
    return (int(array.shape[0]), int(array.shape[1])), []


class SignalFitted(Fitted):
    """Resampling, per-channel normalisation (fitted on training patients) and the fixed window.

    Args:
        rate: target rate (Hz); ``window``: samples the model sees; ``mean``/``std``: per channel ``(C,)``.
        recordings: cohort index -> resampled ``(C, T)`` recording, for training items (None for the logged model).
    """

    def __init__(
        self,
        rate: float,
        window: int,
        mean: np.ndarray,
        std: np.ndarray,
        channels: list[str],
        recordings: dict[int, np.ndarray] | None = None,
    ) -> None:
        self.rate, self.window, self.mean, self.std, self.channels = rate, window, mean, std, channels
        self.recordings = recordings
        self.feature_names = list(channels)
        self.input_shape = {"spatial_dims": 1, "in_channels": len(channels), "size": [window]}

    def _crop(self, array: np.ndarray, start: int | None) -> torch.Tensor:
        """Normalise and cut ``window`` samples at ``start`` (None: the centre); pad short recordings with 0."""
        x = (array - self.mean[:, None]) / self.std[:, None]
        length = x.shape[1]
        if length < self.window:
            x = np.pad(x, ((0, 0), (0, self.window - length)))
        else:
            begin = (length - self.window) // 2 if start is None else start
            x = x[:, begin : begin + self.window]
        return torch.as_tensor(x, dtype=torch.float32)

    def item(self, patient: int) -> torch.Tensor:
        assert self.recordings is not None
        array = self.recordings.get(patient)
        if array is None:
            return torch.zeros((len(self.channels), self.window), dtype=torch.float32)
        return self._crop(array, None)

    def transform(self, raw: list[tuple[str, float]]) -> torch.Tensor:
        items = [self._crop(resample(read_recording(Path(path)), float(rate), self.rate), None) for path, rate in raw]
        return torch.stack(items) if items else torch.zeros((0, len(self.channels), self.window))

    def state(self) -> Any:
        return {
            "rate": self.rate,
            "window": self.window,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "channels": self.channels,
        }

    def augmenter(self, seed: int, augment: bool) -> Callable[[int], torch.Tensor]:
        rng = np.random.default_rng(seed)

        def random_window(patient: int) -> torch.Tensor:
            assert self.recordings is not None
            array = self.recordings[patient]
            start = int(rng.integers(0, max(1, array.shape[1] - self.window + 1)))
            return self._crop(array, start)

        return random_window


@register_kind
class SignalKind(ModalityKind):
    """Regularly sampled multichannel recordings."""

    name = "signal"
    entry_model = SignalEntry
    settings_model = SignalSettings
    encoder_family = "spatial"
    default_encoder = "cnn"
    synthesis_order = 40
    attribution = (
        "occlusion over time: the logit drop when each time window (strip) or each whole channel (per-channel "
        "importance) is replaced by the channel mean; a map, it does not sum to the prediction."
    )

    def load(self, name: str, entry: Any, reader: CohortReader, verify: bool) -> LoadedModality | None:
        frame, ids = reader.table(entry.index, f"modalities.{name}.index")
        if frame is None or ids is None:
            return None
        wanted = [entry.path_column] + ([entry.sampling_rate_column] if entry.sampling_rate_column else [])
        if not reader.check_columns(frame, wanted, f"modalities.{name}", entry.index):
            return None
        rates = pd.Series(entry.sampling_rate, index=frame.index, dtype=float)
        if entry.sampling_rate_column:
            values, bad, infinite = to_numeric(frame[entry.sampling_rate_column])
            rates = pd.Series(values, index=frame.index)
            invalid = sorted(set(bad) | set(infinite) | {int(i) + 1 for i in np.flatnonzero(~(values > 0))})
            files = frame[entry.path_column].notna().to_numpy()
            invalid = [r for r in invalid if files[r - 1]]
            if invalid:
                reader.problem(
                    f"{entry.index} column '{entry.sampling_rate_column}': missing or non-positive sampling rate at "
                    f"{rows_text(invalid)}; give each recording's rate in Hz"
                )
        expected = len(entry.channels) if entry.channels else None
        paths: dict[str, Path] = {}
        rate_of: dict[str, float] = {}
        by_channels: dict[int, list[str]] = {}  # channel count -> the recordings that have it
        durations: list[float] = []
        for row, (pid, relative) in enumerate(zip(ids, frame[entry.path_column], strict=True), start=1):
            rate = float(rates.iloc[row - 1]) if pd.notna(rates.iloc[row - 1]) else float("nan")
            if not isinstance(pid, str) or not isinstance(relative, str) or not rate > 0:
                continue
            where = f"{entry.index} row {row} column '{entry.path_column}' ({relative})"
            path = reader.resolve(relative)
            if path is None:
                reader.problem(
                    f"{where}: path resolves outside the cohort folder ('..' or a symlink); move the file in"
                )
                continue
            if not path.is_file():
                reader.problem(f"{where}: recording not found; fix the path or remove the row")
                continue
            if path.suffix.lower() not in _SUFFIXES:
                reader.problem(f"{where}: unsupported recording format; use .npy (channels, samples) or .csv")
                continue
            if verify:
                shape, found = _inspect(path, where, expected)
                if found:
                    reader.problems += found
                    continue
                assert shape is not None
                by_channels.setdefault(shape[0], []).append(where)
                duration = shape[1] / rate
                durations.append(duration)
                if entry.min_duration is not None and duration < entry.min_duration:
                    reader.problem(
                        f"{where}: {duration:.3g} s recorded, shorter than min_duration {entry.min_duration:g} s; "
                        "remove the row or lower min_duration"
                    )
                    continue
            paths.setdefault(pid, path)
            rate_of.setdefault(pid, rate)
        # Without named channels, the most common count is the cohort's (the first seen wins a tie).
        common = max(by_channels, key=lambda c: len(by_channels[c])) if by_channels else None
        if expected is None and common is not None:
            for n_channels, wheres in by_channels.items():
                if n_channels != common:
                    for where in wheres:
                        reader.problem(
                            f"{where}: {n_channels} channels where the other recordings have {common}; fix it"
                        )
        n_channels = expected or common
        channels = list(entry.channels) if entry.channels else [f"ch{k}" for k in range(n_channels or 0)]
        details: dict[str, Any] = {"missing": {entry.path_column: int(frame[entry.path_column].isna().sum())}}
        if durations:
            details["duration_s"] = {
                "min": float(np.min(durations)),
                "median": float(np.median(durations)),
                "max": float(np.max(durations)),
            }
        details["sampling_rates"] = {f"{r:g} Hz": n for r, n in Counter(rate_of.values()).most_common()}
        details["channels"] = channels
        return LoadedModality(
            ids=set(paths),
            listed=set(ids.dropna()),
            paths=paths,
            meta={"rate": rate_of},
            info={"channels": channels},
            details=details,
            files=sorted(set(paths.values())),
            tables=[entry.index],
        )

    def summarise(self, data: ModalityData, details: dict[str, Any]) -> dict[str, Any]:
        keys = ("channels", "sampling_rates", "duration_s")
        return {k: details[k] for k in keys if k in details}

    def summary_lines(self, name: str, info: dict[str, Any]) -> list[str]:
        lines = [f"  {name}: channels {', '.join(info.get('channels', []))}"]
        if info.get("sampling_rates"):
            lines.append(
                f"  {name} sampling rates: " + ", ".join(f"{k} x{v}" for k, v in info["sampling_rates"].items())
            )
        if info.get("duration_s"):
            d = info["duration_s"]
            lines.append(f"  {name} duration: median {d['median']:.3g} s (min {d['min']:.3g}, max {d['max']:.3g})")
        return lines

    def prepare(self, data: ModalityData, settings: KindSettings, cache: RunCache) -> dict[str, Any]:
        """Read and resample every recording once; choose the run's rate and window (recorded in the model)."""
        assert isinstance(settings, SignalSettings) and data.paths is not None
        present = np.flatnonzero(data.present)
        if not len(present):
            raise CohortError(f"modality '{data.name}': no patient has a recording; add recordings")
        rates = [float(data.meta["rate"][i]) for i in present]
        target = (
            Counter(rates).most_common(1)[0][0] if settings.sampling_rate == "auto" else float(settings.sampling_rate)
        )
        recordings = {}
        with steps(f"resampling {data.name}", len(present), "recordings") as advance:
            for i in present:
                recordings[int(i)] = resample(read_recording(data.paths[i]), float(data.meta["rate"][i]), target)
                advance()
        lengths = np.array([r.shape[1] for r in recordings.values()])
        if settings.window == "auto":
            window = int(min(np.median(lengths), _MAX_AUTO_WINDOW_S * target))
        else:
            window = int(round(float(settings.window) * target))
        if window < 8:
            raise ConfigError(
                f"inputs.{data.name}.window: {window} samples at {target:g} Hz is too short for the encoder; "
                "use a longer window"
            )
        return {"rate": target, "window": window, "recordings": recordings, "padded": int((lengths < window).sum())}

    def notes(self, data: ModalityData, prepared: Any) -> list[str]:
        seconds = prepared["window"] / prepared["rate"]
        notes = [
            f"{data.name}: resampled to {prepared['rate']:g} Hz, window {seconds:g} s ({prepared['window']} samples)"
        ]
        if prepared["padded"]:
            notes.append(
                f"{data.name}: {prepared['padded']} recordings shorter than the {seconds:g} s window were zero-padded"
            )
        return notes

    def fit(
        self,
        data: ModalityData,
        prepared: Any,
        train: np.ndarray,
        encoder: EncoderConfig,
        settings: KindSettings,
        root: Path,
    ) -> SignalFitted:
        rows = [int(i) for i in np.asarray(train) if int(i) in prepared["recordings"]]
        if not rows:
            raise CohortError(f"modality '{data.name}': no training patient of this fold has it; add patients")
        stacked = np.concatenate([prepared["recordings"][i] for i in rows], axis=1)
        mean, std = stacked.mean(axis=1), stacked.std(axis=1)
        std = np.where(std > 1e-12, std, 1.0)  # a flat channel stays 0 instead of dividing by 0
        return SignalFitted(
            prepared["rate"], prepared["window"], mean, std, list(data.info["channels"]), prepared["recordings"]
        )

    def describe(self, data: ModalityData, settings: KindSettings) -> dict[str, Any]:
        return {"channels": list(data.info["channels"])}

    def raw(self, data: ModalityData, rows: np.ndarray) -> list[tuple[str, float]]:
        assert data.paths is not None
        return [(str(data.paths[i]), float(data.meta["rate"][i])) for i in rows]

    def frame_columns(self, modality: str, description: dict[str, Any]) -> list[str]:
        return [f"{modality}.path", f"{modality}.sampling_rate"]

    def to_frame(self, modality: str, data: ModalityData, rows: np.ndarray) -> dict[str, list[Any]]:
        assert data.paths is not None
        return {
            f"{modality}.path": [str(data.paths[i]) if data.present[i] else None for i in rows],
            f"{modality}.sampling_rate": [float(data.meta["rate"][i]) if data.present[i] else None for i in rows],
        }

    def from_frame(self, modality: str, description: dict[str, Any], frame: pd.DataFrame) -> tuple[Any, np.ndarray]:
        missing = [c for c in self.frame_columns(modality, description) if c not in frame.columns]
        if missing:
            raise RunError(f"input frame: missing columns {missing} of signal modality '{modality}'")
        paths = frame[f"{modality}.path"]
        rates = pd.to_numeric(frame[f"{modality}.sampling_rate"], errors="coerce")
        present = ~blank(paths).to_numpy()
        if (present & ~(rates.to_numpy() > 0)).any():
            raise RunError(f"input frame: '{modality}.sampling_rate' must be a positive rate (Hz) for every recording")
        return [(str(p), float(r)) for p, r in zip(paths[present], rates[present], strict=True)], present

    def compatibility(
        self, modality: str, description: dict[str, Any], states: list[Any], data: ModalityData, *, max_missing: float
    ) -> list[Mismatch]:
        trained, found = list(description["channels"]), list(data.info.get("channels", []))
        if trained != found:
            return [
                Mismatch(
                    f"modality '{modality}': the model was trained on {len(trained)} channels ({', '.join(trained)}), "
                    f"the cohort has {len(found)} ({', '.join(found)}); record the same channels in the same order",
                    error=True,
                )
            ]
        return []

    def restore(self, description: dict[str, Any], state: Any) -> SignalFitted:
        return SignalFitted(
            float(state["rate"]),
            int(state["window"]),
            np.asarray(state["mean"]),
            np.asarray(state["std"]),
            list(state["channels"]),
        )

    def explain(self, context: ExplainContext) -> None:
        """Per-channel importance of every explained patient (features csv) and saliency strips for a few."""
        rows = context.indices[context.data.present[context.indices]]
        channel_drop: list[np.ndarray] = []
        strips: dict[int, list[np.ndarray]] = {}
        panel_patients = {int(context.indices[p]) for p in context.confident_patients()}
        position_of = {int(p): k for k, p in enumerate(context.indices)}
        for view in context.folds:
            drops = []
            # One loader and one encoder pass over every explained patient; each patient's head takes its row.
            embeddings, present, inputs = view.embed(rows)
            for k, patient in enumerate(rows):
                head = ModalityLogit(
                    view.model,
                    context.modality,
                    {m: e[k : k + 1] for m, e in embeddings.items()},
                    present[k : k + 1],
                    int(context.classes[position_of[int(patient)]]),
                )
                x = inputs[context.modality][k : k + 1]
                drops.append(_occlusion(head, x, by="channel"))
                if int(patient) in panel_patients:
                    strips.setdefault(int(patient), []).append(_occlusion(head, x, by="time"))
            channel_drop.append(np.array(drops))
        mean_drop = np.mean(channel_drop, axis=0)
        channels = list(context.data.info["channels"])
        fitted = context.folds[0].fitted[context.modality]
        records = []
        for k, patient in enumerate(rows):
            trace = fitted.item(int(patient)).numpy()
            for c, channel in enumerate(channels):
                records.append(
                    (context.pseudo_ids[patient], channel, float(np.sqrt(np.mean(trace[c] ** 2))), mean_drop[k, c])
                )
        frame = pd.DataFrame(records, columns=["patient", "feature", "value", "attribution"])
        frame.to_csv(context.features_path(), index=False)
        for patient, maps in strips.items():
            _save_strip(
                fitted.item(patient).numpy(),
                np.mean(maps, axis=0),
                fitted.rate,
                channels,
                context.overlay_path(patient),
                f"{context.pseudo_ids[patient]}: {context.modality} saliency",
            )

    def synthesize(
        self,
        name: str,
        out: Path,
        latent: np.ndarray,
        present: np.ndarray,
        ids: list[str],
        rng: np.random.Generator,
        options: dict[str, Any],
    ) -> SynthResult:
        """Two-lead ECG-like traces at 100 Hz, 8 to 12 s long; the beat rate (50-110 bpm) follows the latent."""
        rate = 100.0
        folder = out / f"{name}_signals"
        folder.mkdir(parents=True, exist_ok=True)
        keep = np.flatnonzero(present)
        paths = []
        for i in keep:
            seconds = rng.uniform(8.0, 12.0)
            t = np.arange(int(seconds * rate)) / rate
            bpm = 80.0 + 30.0 * np.tanh(latent[i])
            beats = np.arange(rng.uniform(0, 60.0 / bpm), t[-1], 60.0 / bpm)
            beats = beats + rng.normal(0, 0.01, len(beats))  # a little heart-rate variability
            qrs = np.exp(-(((t[None, :] - beats[:, None]) / 0.025) ** 2)).sum(axis=0)
            wave = np.exp(-(((t[None, :] - beats[:, None] - 0.25) / 0.06) ** 2)).sum(axis=0)
            wander = 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi))
            lead_i = qrs + 0.3 * wave + wander + 0.08 * rng.standard_normal(len(t))
            lead_ii = 0.7 * qrs + 0.4 * wave + wander + 0.08 * rng.standard_normal(len(t))
            relative = f"{name}_signals/sig{i + 1:04d}.npy"
            np.save(out / relative, np.stack([lead_i, lead_ii]).astype(np.float32))
            paths.append(relative)
        index = f"{name}.csv"
        pd.DataFrame({"patient_id": [ids[i] for i in keep], "path": paths}).to_csv(out / index, index=False)
        entry = {
            "type": "signal",
            "index": index,
            "path_column": "path",
            "sampling_rate": rate,
            "channels": ["I", "II"],
        }
        return SynthResult(entry, ["beat rate"])


def _occlusion(head: ModalityLogit, x: torch.Tensor, by: Literal["time", "channel"]) -> np.ndarray:
    """Logit drop when each time segment (``(segments,)``) or each channel (``(C,)``) is set to 0 (its mean)."""
    with torch.no_grad():
        full = head(x)[0, 0]
        channels, length = x.shape[1], x.shape[2]
        if by == "channel":
            copies = x.repeat(channels, 1, 1)
            for c in range(channels):
                copies[c, c] = 0.0
        else:
            edges = np.linspace(0, length, _SEGMENTS + 1).astype(int)
            copies = x.repeat(_SEGMENTS, 1, 1)
            for k in range(_SEGMENTS):
                copies[k, :, edges[k] : edges[k + 1]] = 0.0
        return (full - head(copies)[:, 0]).cpu().numpy().astype(np.float64)


def _save_strip(trace: np.ndarray, drops: np.ndarray, rate: float, channels: list[str], path: Path, title: str) -> None:
    """The normalised trace of each channel with the time-window saliency as a coloured strip beneath."""
    shown = min(len(channels), 3)
    # At 90 dpi every trace row is >= 160 px and the strip 70 px: readable at the report's full width.
    figure = Figure(figsize=(11, 1.8 * shown + 1.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(shown + 1, 1, sharex=True, gridspec_kw={"height_ratios": [2.3] * shown + [1]})
    t = np.arange(trace.shape[1]) / rate
    for c in range(shown):
        axes[c].plot(t, trace[c], color="black", linewidth=0.7)
        axes[c].set_ylabel(channels[c], fontsize=10)
    limit = float(np.abs(drops).max()) or 1.0
    strip = axes[-1].imshow(
        drops[None, :], aspect="auto", cmap="bwr", vmin=-limit, vmax=limit, extent=(0, t[-1] if len(t) else 1, 0, 1)
    )
    axes[-1].set_yticks([])
    axes[-1].set_ylabel("saliency", fontsize=10)
    axes[-1].set_xlabel("seconds", fontsize=10)
    bar = figure.colorbar(strip, ax=list(axes), shrink=0.9, aspect=18, pad=0.02)
    bar.set_label("logit drop when occluded", fontsize=10)
    bar.ax.tick_params(labelsize=9)
    figure.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
