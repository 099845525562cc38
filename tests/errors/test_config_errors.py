"""Bad configs and CLI arguments to ``clinfuse run``: exit 2, one line naming the key and the fix, no run.

Every case is caught before an MLflow run exists (most before the store is even opened), so a typo never
leaves a FINISHED (or any) run behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clinfuse.config import LOWER_IS_BETTER

Cli = Callable[[list[str]], tuple[int, str]]


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text, text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")


def unknown_top_key(config: Path) -> list[str]:
    config.write_text(config.read_text() + "epochz: 3\n")
    return []


def unknown_nested_key(config: Path) -> list[str]:
    _edit(config, "  epochs: 1", "  epochs: 1\n  epchs: 3")
    return []


def invalid_yaml(config: Path) -> list[str]:
    config.write_text("name: [unclosed\ncohort: coh\n")
    return []


def not_a_mapping(config: Path) -> list[str]:
    config.write_text("- just\n- a list\n")
    return []


def missing_cohort_key(config: Path) -> list[str]:
    _edit(config, "cohort: coh\n", "")
    return []


def missing_config(config: Path) -> list[str]:
    config.unlink()
    return []


def setter(*overrides: str) -> Callable[[Path], list[str]]:
    def apply(config: Path) -> list[str]:
        return [arg for item in overrides for arg in ("--set", item)]

    apply.__name__ = "set_" + "_".join(overrides)
    return apply


CASES: list[tuple[Callable[[Path], list[str]], list[str]]] = [
    (unknown_top_key, ["cfg.yaml", "unknown key 'epochz'", "remove it or check its spelling"]),
    (unknown_nested_key, ["cfg.yaml", "unknown key 'training.epchs'"]),
    (invalid_yaml, ["cfg.yaml", "not valid YAML", "fix the syntax"]),
    (not_a_mapping, ["cfg.yaml", "top level must be a mapping"]),
    (missing_cohort_key, ["cfg.yaml", "missing required key 'cohort'"]),
    (missing_config, ["cfg.yaml", "config file not found"]),
    (setter("training.epochs=abc"), ["key 'training.epochs'", "valid integer", "'abc'"]),
    (setter("training.epochs=0"), ["key 'training.epochs'", "greater than 0", "got 0"]),
    (setter("training.epochs=-3"), ["key 'training.epochs'", "greater than 0", "got -3"]),
    (setter("training.batch_size=0"), ["key 'training.batch_size'", "greater than 0"]),
    (setter("training.lr=0"), ["key 'training.lr'", "greater than 0"]),
    (setter("training.image_size=[0,8]"), ["key 'training.image_size'", "positive integers"]),
    (setter("evaluation.folds=1"), ["key 'evaluation.folds'", "greater than or equal to 2"]),
    (setter("evaluation.test_fraction=1.5"), ["key 'evaluation.test_fraction'", "less than 0.9"]),
    (setter("evaluation.test_fraction=0"), ["key 'evaluation.test_fraction'", "greater than 0"]),
    (setter("device=tpu"), ["key 'device'", "auto, cpu, cuda"]),
    (setter("training.nope=1"), ["unknown key 'training.nope'"]),
    (setter("training"), ["--set 'training'", "expected KEY=VALUE"]),
    (setter("training.epochs.max=3"), ["--set training.epochs.max", "'epochs' is not a section"]),
    (setter("modalities=[pet]"), ["config key 'modalities'", "pet not in the cohort", "imaging, clinical, genomic"]),
    (setter("cohort=nowhere"), ["config key 'cohort'", "nowhere does not exist"]),
    (setter("encoders={pet: {}}"), ["config key 'encoders.pet'", "no modality 'pet'"]),
    (setter("encoders.imaging.name=resnet1"), ["config key 'encoders.imaging.name'", "unknown encoder 'resnet1'"]),
    (
        setter("encoders.imaging.name=mlp"),
        ["'encoders.imaging.name'", "'mlp' cannot encode image modality", "resnet10"],
    ),
    (setter("encoders.clinical.name=vit"), ["'encoders.clinical.name'", "cannot encode tabular", "mlp, snn"]),
    (setter("encoders.genomic.gene_groups=nowhere.csv"), ["nowhere.csv", "gene groups file not found"]),
    (setter("inputs={imaging: {window: 3}}"), ["'inputs.imaging.window'", "unknown key for this kind"]),
    (setter("fusion.method=gatted"), ["config key 'fusion.method'", "unknown method 'gatted'", "gated"]),
    (setter("compare=[gated,concatt]"), ["config key 'compare'", "unknown method 'concatt'"]),
    (setter("training.early_stopping.metric=auc"), ["'training.early_stopping.metric'", "'auc'", "auroc"]),
    (setter("evaluation.folds=12"), ["label:", "need at least 16 per class", "lower --folds"]),
]


@pytest.mark.parametrize(("breaker", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_config_is_a_usage_error(
    config: Path,
    cli: Cli,
    usage_error: Callable[[int, str, list[str]], None],
    breaker: Callable[[Path], list[str]],
    expected: list[str],
) -> None:
    extra = breaker(config)
    code, output = cli(["run", str(config), *extra])
    usage_error(code, output, expected)
    assert not (config.parent / "mlflow.db").exists(), "the store was opened before the config was validated"


def test_run_without_config_or_resume(project: Path, cli: Cli, usage_error: Callable[..., None]) -> None:
    code, output = cli(["run"])
    usage_error(code, output, ["pass a config file", "--resume RUN_ID"])


def test_malformed_cli_option(project: Path, cli: Cli) -> None:
    code, output = cli(["cohort", "synth", str(project / "x"), "--missing-rate", "imaging"])
    assert code == 2 and "Traceback" not in output
    assert "error: --missing-rate 'imaging': expected MODALITY=NUMBER" in output
    code, output = cli(["cohort", "synth", str(project / "x"), "--patients", "many"])
    assert code == 2 and "Traceback" not in output
    assert "error: Invalid value for '--patients'" in output and "valid integer" in output


@pytest.mark.parametrize("metric", LOWER_IS_BETTER)
def test_lower_is_better_early_stopping_minimises(config: Path, metric: str) -> None:
    from clinfuse.config import load_config

    assert load_config(config, [f"training.early_stopping.metric={metric}"]).training.early_stopping.mode == "min"


def test_bad_option_value_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    from clinfuse.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["cohort", "synth", "out", "--patients", "many"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "--patients" in err[0] and "--help" in err[0]
