"""clinfuse: clinical multimodal diagnosis with gated fusion, MLflow tracking and Shapley explanations."""

from __future__ import annotations

__version__ = "0.1.0"
