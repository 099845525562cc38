"""``clinfuse predict``: a model trained on one synthetic cohort applied to its own test patients, to a second
cohort drawn with another seed, to an unlabelled one and to cohorts that differ from the training one.

One tiny table-only model (40 patients, clinical + genomic, 1 epoch) is trained once for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from clinfuse.cohort import synthesize_cohort
from clinfuse.config import load_config
from clinfuse.pipeline import run_experiment
from clinfuse.pipeline.predict import predict_cohort

MODALITIES = {"clinical": "tabular", "genomic": "genomic"}
pytestmark = pytest.mark.slow


def _raw_ids(folder: Path) -> set[str]:
    table = pd.read_csv(folder / "clinical.csv", dtype=str)
    return set(table["patient_id"]) | set(table["mrn"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    project = tmp_path_factory.mktemp("predict")
    cohort = synthesize_cohort(project / "train", patients=40, seed=3, n_genes=20, modalities=MODALITIES)
    config = {
        "name": "pred",
        "cohort": str(cohort),
        "encoders": {"clinical": {"embed_dim": 8, "hidden": [8]}, "genomic": {"embed_dim": 8, "hidden": [8]}},
        "fusion": {"method": "gated", "hidden": 8},
        "training": {"epochs": 1, "batch_size": 8},
        "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 20},
        "explain": {"enabled": False},
        "report": {"enabled": False},
        "tracking": {"register_as": "pred_model"},
        "device": "cpu",
    }
    (project / "cfg.yaml").write_text(yaml.safe_dump(config))
    outcome = run_experiment(load_config(project / "cfg.yaml", []), project_dir=project)
    store = f"sqlite:///{(project / 'mlflow.db').as_posix()}"
    return {"project": project, "cohort": cohort, "run_id": outcome.run_id, "run_dir": outcome.run_dir, "store": store}


def _predict(trained: dict, cohort: Path, out: Path, **options: object):
    return predict_cohort(
        trained["run_id"], cohort, out, project_dir=trained["project"], tracking_uri=trained["store"], **options
    )


def test_training_test_patients_get_the_runs_own_predictions(trained: dict, tmp_path: Path) -> None:
    outcome = _predict(trained, trained["cohort"], tmp_path / "own.csv")
    mine = pd.read_csv(tmp_path / "own.csv", dtype={"patient": str})
    logged = pd.read_csv(trained["run_dir"] / "predictions.csv", dtype={"patient": str}).query("model == 'gated'")
    logged = logged.drop(columns=["model"])
    joined = logged.merge(mine, on="patient", suffixes=("_run", ""))
    assert len(joined) == len(logged) > 0
    np.testing.assert_allclose(joined["prob"], joined["prob_run"], atol=1e-5)
    assert (joined["prediction"].astype(str) == joined["prediction_run"].astype(str)).all()
    metadata = json.loads((tmp_path / "own.csv.json").read_text())
    threshold = json.loads((trained["run_dir"] / "metrics.json").read_text())["gated"]["threshold"]
    assert metadata["threshold"] == pytest.approx(threshold)
    # every patient has a probability and a decision; the decision is the threshold applied to it
    assert mine["prob"].notna().all() and mine["prediction"].notna().all()
    assert ((mine["prob"] >= threshold).astype(int) == mine["prediction"].astype(int)).all()
    assert not set(mine["patient"]) & _raw_ids(trained["cohort"])
    assert outcome.external is not None  # the training cohort is labelled: validated too


def test_external_cohort_is_validated_logged_and_reported(trained: dict, tmp_path: Path) -> None:
    other = synthesize_cohort(tmp_path / "ext", patients=40, seed=4, n_genes=20, modalities=MODALITIES)
    outcome = _predict(trained, other, tmp_path / "ext.csv", report=True, explain=True)
    facts = outcome.external
    assert facts is not None and 0.0 <= facts["external"]["auroc"] <= 1.0
    assert set(facts["calibration"]) == {"intercept", "slope"}
    assert {"shapley_clinical", "shapley_genomic"} <= set(outcome.frame.columns)
    run = MlflowClient(trained["store"]).get_run(outcome.run_id)
    assert run.data.tags["clinfuse.training_run"] == trained["run_id"]
    assert run.info.experiment_id == MlflowClient(trained["store"]).get_run(trained["run_id"]).info.experiment_id
    assert "external_auroc" in run.data.metrics
    assert {d.dataset.name for d in run.inputs.dataset_inputs} >= {"synthetic.clinical", "synthetic.genomic"}
    html = outcome.report.read_text()
    assert "Calibration" in html and "Case mix" in html
    raw = _raw_ids(other)
    for path in [outcome.out, Path(f"{outcome.out}.json"), outcome.report, outcome.report.parent / "external.json"]:
        text = path.read_text()
        assert not [r for r in raw if r in text], path


def test_unlabelled_cohort_with_raw_ids_is_predicted_and_nothing_logged(trained: dict, tmp_path: Path) -> None:
    other = synthesize_cohort(tmp_path / "new", patients=12, seed=5, n_genes=20, modalities=MODALITIES)
    table = pd.read_csv(other / "clinical.csv", dtype=str).drop(columns=["diagnosis"])
    table.to_csv(other / "clinical.csv", index=False)
    before = len(
        MlflowClient(trained["store"]).search_runs(
            [MlflowClient(trained["store"]).get_run(trained["run_id"]).info.experiment_id]
        )
    )
    outcome = _predict(trained, other, tmp_path / "new.csv", keep_ids=True)
    assert outcome.external is None and outcome.run_id is None
    assert set(outcome.frame["patient"]) == set(table["patient_id"])
    client = MlflowClient(trained["store"])
    assert len(client.search_runs([client.get_run(trained["run_id"]).info.experiment_id])) == before


def _edit(folder: Path, case: str) -> None:
    spec = yaml.safe_load((folder / "cohort.yaml").read_text())
    clinical = pd.read_csv(folder / "clinical.csv", dtype=str)
    genomic = pd.read_csv(folder / "genomic.csv", dtype=str)
    if case == "missing_column":
        clinical = clinical.drop(columns=["bmi"])
    elif case == "extra_column":
        clinical["ward"] = "1"
    elif case == "unseen_category":
        clinical.loc[:3, "stage"] = "V"
    elif case == "few_genes":
        genomic = genomic.drop(columns=list(genomic.columns[1:3]))
    elif case == "many_genes":
        genomic = genomic.drop(columns=list(genomic.columns[1:15]))
    elif case == "missing_modality":
        del spec["modalities"]["genomic"]
    elif case == "unknown_modality":
        spec["modalities"]["omics2"] = dict(spec["modalities"]["genomic"])
    elif case == "wrong_kind":
        spec["modalities"]["genomic"] = {"type": "tabular", "table": "genomic.csv"}
    clinical.to_csv(folder / "clinical.csv", index=False)
    genomic.to_csv(folder / "genomic.csv", index=False)
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_genes_missing_from_the_cohort_take_the_training_mean(trained: dict, tmp_path: Path) -> None:
    from clinfuse.cohort import load_cohort
    from clinfuse.pipeline.predict import cohort_frame, load_trained_run

    folder = shutil.copytree(trained["cohort"], tmp_path / "c")
    _edit(folder, "few_genes")
    table = pd.read_csv(folder / "genomic.csv", dtype=str)
    table.iloc[3:].to_csv(folder / "genomic.csv", index=False)  # three patients without genes
    genes = list(pd.read_csv(trained["cohort"] / "genomic.csv").columns[1:3])
    run = load_trained_run(trained["run_id"], trained["store"])
    cohort = load_cohort(folder, require_labels=False)
    frame = cohort_frame(run.spec, cohort)
    present = cohort.modalities["genomic"].present
    assert 0 < present.sum() < cohort.n
    imputer = run.predictor.preprocessors["fold0"]["genomic"]["preprocessor"].named_steps["impute"]
    for gene in genes:
        mean = run.spec["training_cohort"]["numeric"][f"genomic.{gene}"][0]
        values = pd.to_numeric(frame[f"genomic.{gene}"])
        np.testing.assert_allclose(values[present], mean)
        assert values[~present].isna().all()  # patients without genes stay without genes
        # the mean of the training patients' values, not the fitted imputer's median
        training = pd.read_csv(trained["cohort"] / "genomic.csv")[gene]
        assert training.min() < mean < training.max()
        assert abs(mean - imputer.statistics_[list(imputer.feature_names_in_).index(gene)]) > 1e-3


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing_column", 2, "error: modality 'clinical': 1 of 6 columns of the model missing from the cohort (bmi)"),
        ("extra_column", 0, "warning: modality 'clinical': 1 columns the model does not use ignored (ward)"),
        ("unseen_category", 0, "column 'stage': 4 values of 1 categories unseen in training, encoded as unknown"),
        ("few_genes", 0, "2 of 20 genes of the model missing from the cohort"),
        ("many_genes", 2, "error: modality 'genomic': 14 of 20 genes of the model missing"),
        ("missing_modality", 0, "modality 'genomic' of the model is not in the cohort; absent for every patient"),
        ("unknown_modality", 0, "modality 'omics2': not used by the model; ignored"),
        ("wrong_kind", 2, "trained on kind 'genomic', the cohort declares 'tabular'"),
    ],
)
def test_each_difference_gets_its_line_and_no_traceback(
    trained: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    code: int,
    message: str,
) -> None:
    from clinfuse.cli import main

    folder = shutil.copytree(trained["cohort"], tmp_path / "c")
    _edit(folder, case)
    monkeypatch.chdir(trained["project"])
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "predict",
                trained["run_id"],
                str(folder),
                "--out",
                str(tmp_path / "p.csv"),
                "--tracking-uri",
                trained["store"],
            ]
        )
    captured = capsys.readouterr()
    assert exit_info.value.code == code, captured.err[-2000:]
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_registered_candidate_predicts_like_the_run(trained: dict, tmp_path: Path) -> None:
    by_run = _predict(trained, trained["cohort"], tmp_path / "a.csv")
    by_alias = predict_cohort(
        "models:/pred_model@candidate",
        trained["cohort"],
        tmp_path / "b.csv",
        project_dir=trained["project"],
        tracking_uri=trained["store"],
    )
    np.testing.assert_allclose(by_alias.frame["prob"], by_run.frame["prob"], atol=1e-12)


def _model_folder(trained: dict, dst: Path) -> Path:
    import mlflow

    mlflow.set_tracking_uri(trained["store"])
    return Path(mlflow.artifacts.download_artifacts(f"runs:/{trained['run_id']}/model", dst_path=str(dst)))


def _frame(trained: dict) -> pd.DataFrame:
    from clinfuse.cohort import load_cohort
    from clinfuse.training.inference import cohort_input_frame

    cohort = load_cohort(trained["cohort"])
    return cohort_input_frame(cohort, ["clinical", "genomic"], np.arange(6))


_ISOLATED = """
import importlib.util, json, sys
sys.path += json.loads(sys.argv[1])
assert importlib.util.find_spec("clinfuse") is None, "clinfuse importable before loading the model"
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[2])
out = model.predict(pd.read_json(sys.argv[3], orient="split"))
import clinfuse
print(json.dumps({"where": clinfuse.__file__, "out": out.to_dict(orient="list")}))
"""


def test_pyfunc_loads_where_clinfuse_is_not_installed(trained: dict, tmp_path: Path) -> None:
    from clinfuse.pipeline.predict import load_trained_run
    from clinfuse.training.inference import predict_frame

    folder = _model_folder(trained, tmp_path / "m")
    frame = _frame(trained)
    frame.to_json(tmp_path / "frame.json", orient="split")
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    # -I ignores PYTHONPATH and the user site; -S skips site-packages and their .pth files (the editable
    # install's path entry), which the script then adds back as bare folders.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _ISOLATED, json.dumps(site), str(folder), str(tmp_path / "frame.json")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["where"].startswith(str(folder))
    run = load_trained_run(trained["run_id"], trained["store"])
    expected = predict_frame(run.predictor.model, run.predictor.preprocessors, frame)
    np.testing.assert_allclose(result["out"]["prob"], expected["prob"], atol=1e-6)
    assert result["out"]["prediction"] == [str(v) for v in expected["prediction"]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_served_model_answers_on_localhost_with_the_same_numbers(trained: dict, tmp_path: Path) -> None:
    from clinfuse.pipeline.predict import load_trained_run
    from clinfuse.training.inference import predict_frame

    folder = _model_folder(trained, tmp_path / "m")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(folder), "--env-manager", "local"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # mlflow starts uvicorn by name: the interpreter's own bin folder must be on PATH.
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    try:
        frame = _frame(trained)
        body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split"))}).encode()
        deadline, answer = time.time() + 180, None
        while answer is None and time.time() < deadline:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
                )
                answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            except OSError:
                assert server.poll() is None, "server exited"
                time.sleep(1)
        assert answer is not None
        run = load_trained_run(trained["run_id"], trained["store"])
        expected = predict_frame(run.predictor.model, run.predictor.preprocessors, frame)
        served = pd.DataFrame(answer["predictions"])
        np.testing.assert_allclose(served["prob"], expected["prob"], atol=1e-6)
        # bound to the loopback interface only: the machine's other addresses do not answer
        others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
        for address in others:
            with socket.socket() as probe, pytest.raises(OSError):
                probe.settimeout(2)
                probe.connect((address, port))
    finally:
        server.terminate()
        server.wait(timeout=30)
