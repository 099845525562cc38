"""docs/configuration.md stays true to ExperimentConfig: its example is valid and it names every setting."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from clinfuse.config import ExperimentConfig, config_to_dict, flatten, validate_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _documented_yaml() -> dict:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block, "docs/configuration.md lost its YAML example"
    return yaml.safe_load(block.group(1))


def test_documented_example_is_a_valid_config_with_the_documented_defaults() -> None:
    documented = _documented_yaml()
    config = validate_config(documented, "docs/configuration.md")
    # every value the page shows is the value the config holds, so the page cannot drift from the defaults
    # silently (cohort and name are the example's own choices)
    shown = flatten({k: v for k, v in documented.items() if k not in ("cohort", "encoders")})
    held = flatten({k: v for k, v in config_to_dict(config).items() if k not in ("cohort", "encoders")})
    defaults = flatten(config_to_dict(ExperimentConfig(cohort=Path("x"))))
    for key, value in shown.items():
        assert held[key] == value, key
        if key != "name":
            assert defaults[key] == value, f"docs show {key}={value!r}, the default is {defaults[key]!r}"


def _settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            keys.extend(_settings(nested, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_setting_outside_the_encoders_is_documented() -> None:
    documented = set(flatten({k: v for k, v in _documented_yaml().items() if k != "encoders"}))
    missing = [key for key in _settings(ExperimentConfig) if not key.startswith("encoders") and key not in documented]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
