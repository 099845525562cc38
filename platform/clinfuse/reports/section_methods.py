"""The ``methods`` and ``reproducibility`` sections: how each number was computed and how to get it again."""

from __future__ import annotations

from clinfuse.reports.markup import Raw, esc, heading, missing, note, para, section, table
from clinfuse.reports.run_folder import RunFolder
from clinfuse.reports.shareable import project_root, shareable_config

_HOW = (
    "Modality contributions are exact Shapley values over modality coalitions: the model is evaluated on "
    "every subset S of the patient's modalities (2^M forward passes of the fusion head), and φ_m averages"
    " m's marginal effect f(S ∪ {m}) − f(S) with the Shapley weights. Values are in logit space (log-risk"
    " for survival); for multiclass tasks they explain the logit of the predicted class.",
    "A modality that is left out of a coalition, or that the patient lacks, is replaced by the model's "
    "learned missing embedding, which the model saw during training through modality dropout. So f(∅) is "
    "the model's output with every modality replaced by its missing embedding, not an average over other "
    "patients.",
    "Efficiency holds: for every patient f(∅) + Σ φ_m = f(x) (checked in the contributions section). A "
    "modality the patient lacks gets φ = 0.",
    "Usefulness is separate from influence. φ measures how much a modality moves the output (influence); "
    "SAGE (Covert et al. 2020) measures how much it lowers the fold ensemble's loss on the held-out test "
    "patients (usefulness): the exact Shapley value of each modality, over all 2^M coalitions, in the game "
    "'loss with no modality minus loss with this set' (log-loss; negative Cox partial log-likelihood per "
    "event for survival), with absent modalities on the missing path; the same game with AUROC (C-index for "
    "survival) as the value is reported too. The values of a game sum to the gap between no modality and all "
    "of them. CIs are percentile bootstraps over test patients (the exact values recomputed per resample); "
    "each fold model is also scored on its own validation patients. A modality whose mean |φ| exceeds a third "
    "of the top modality's while its SAGE CI does not lie above 0 is flagged; with ablation on, the primary "
    "model is retrained without it and compared on the same test patients.",
    "Within-modality attributions (top clinical variables, top genes) are SHAP values of the modality's "
    "encoder path; they sum to the difference between the patient's output and the output with that "
    "modality's background inputs, not to the modality's φ. Image overlays are saliency maps: where the "
    "image encoder is sensitive, not a segmentation.",
    "Test metrics come from the held-out test split, which was never used for training, model selection "
    "or thresholds; confidence intervals are percentile bootstraps over test patients. Fold means and sds"
    " are over the cross-validation validation folds. The classification threshold was chosen on "
    "validation folds.",
    "Calibration: the reliability diagram and the ECE use the same 10 equal-width bins of the predicted "
    "probability (P(positive) for binary tasks, the top-label confidence for multiclass ones). The calibration "
    "intercept (calibration-in-the-large, logit(p) as an offset; ideal 0) and slope (ideal 1; below 1 means "
    "too extreme predictions) come from logistic regression on logit(p) with Wald CIs. The decision curve shows "
    "the net benefit TP/n − FP/n · t/(1 − t) of acting when the prediction exceeds the threshold t.",
)

_SURVIVAL = (
    "Survival metrics: Harrell's C-index (c_index); Uno's C (uno_c), which weights each comparable pair by the "
    "inverse squared Kaplan-Meier censoring survival at the earlier time and counts only pairs whose earlier "
    "time is before the horizon; the cumulative/dynamic AUC at the horizon (td_auc); and the integrated Brier"
    " score from the first follow-up time to the horizon (ibs; lower is better). The horizon is the median "
    "follow-up time of the evaluated patients, and censoring weights are estimated on them.",
    "The model predicts a log-risk, not survival curves, so the IBS uses survival curves from a Breslow "
    "baseline hazard fitted on the evaluated patients' own risks and outcomes: it judges whether the spread "
    "of the risks matches the outcomes given the best baseline for them, not a calibrated survival forecast.",
    "Kaplan-Meier curves are drawn per tertile of the predicted log-risk with pointwise 95% log-log bands "
    "(scikit-survival), numbers at risk under the plot and a log-rank test across the three groups; AUC(t) is "
    "the cumulative/dynamic AUC at horizons from the 10th to the 90th percentile of event times.",
)

_NOT = (
    "Not causal: φ says how much the trained model's output moved when a modality was available, not what"
    " would happen to the patient if the measurement changed.",
    "Influence is not usefulness: a large φ means the model reacts to a modality, not that the modality makes"
    " its predictions better; a model can fit noise in a modality that carries no information. Read φ beside"
    " SAGE on held-out patients.",
    "Gates are not explanations: gate values are internal mixing weights; attention-like weights need not"
    " agree with a modality's effect on the output (Jain & Wallace, 2019, 'Attention is not "
    "Explanation').",
    "Contributions describe this model on this cohort: a modality with a small φ may still be informative"
    " to a differently trained model, and correlated modalities share credit through the interaction "
    "terms.",
)

_CAVEATS = (
    "Patients lacking a modality are not missing at random in most clinical cohorts; the model may learn "
    "from the pattern of missingness itself (a missing embedding is a learned signal).",
    "Small test sets give wide confidence intervals; differences between models inside overlapping "
    "intervals and p-values uncorrected for multiple comparisons should not be over-read.",
    "Identifiers are pseudonymous and identifier columns are never used as features; re-identification "
    "risk remains for rare combinations of clinical values.",
)


_LINEAR_BASE = (
    "The deep models start from a linear base: each fold's penalised regression (the classical logistic or Cox "
    "regression, on the same features, fitted on that fold's training patients) is part of the model, and the "
    "networks' output is added to it at a learned scale. Epoch 0, the linear base alone (the networks switched "
    "off), competes with every training epoch on the validation metric, so a fold whose networks never improve "
    "on the base keeps the base (best epoch 0 in the per-fold table). In the modality Shapley game a modality "
    "outside a coalition enters the linear part as its features at their training means (a contribution of 0) and the "
    "networks as its missing embedding.",
)

_CLASSICAL = (
    "The classical baselines use the deep models' folds, fold-fitted preprocessing and test patients, and read "
    "the table columns plus intensity statistics and a coarse pooled grid of each image or recording. Logistic "
    "regression is ridge (L2), or lasso (L1, binary labels only) where the best lasso penalty beats the best "
    "ridge penalty by more than one standard error; for survival it is elastic-net Cox. A 3-fold inner "
    "cross-validation on each fold's training patients chooses the penalty, and each fold's choice is a "
    "parameter of the baseline's MLflow run. Gradient boosting is histogram trees (on the Cox loss for "
    "survival), stopped early on a held-out part of the training patients in folds of 200 or more. Their test "
    "prediction is the mean logit of the fold models, as for the deep models.",
)


def _list(items: tuple[str, ...]) -> Raw:
    return Raw("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>")


def methods_section(run: RunFolder) -> Raw:
    """How each number was computed, what it does not mean, and data caveats."""
    parts = [
        heading("How the numbers were computed"),
        _list(
            _HOW
            + (_LINEAR_BASE if run.linear_base else ())
            + (_CLASSICAL if run.classical_models else ())
            + (_SURVIVAL if run.task == "survival" else ())
        ),
        heading("What the values do not mean"),
        _list(_NOT),
        heading("Data caveats"),
        _list(_CAVEATS),
    ]
    if run.problems:
        parts += [heading("Files that could not be read"), _list(tuple(run.problems))]
    return section("methods", "Methods and limitations", parts)


def reproducibility_section(run: RunFolder) -> Raw:
    """Config, cohort hash, code commit, versions, seed and MLflow run id."""
    info = run.run_info
    parts: list[str] = []
    if not info:
        parts.append(missing("run_info.json", "the run id, cohort hash, commit, versions and seed are unknown"))
    else:
        keys = (
            ("MLflow run id", "run_id"),
            ("experiment", "experiment"),
            ("run name", "run_name"),
            ("cohort", "cohort_name"),
            ("cohort hash (sha256)", "cohort_hash"),
            ("code commit", "git_commit"),
            ("seed", "seed"),
            ("device", "device"),
            ("task", "task"),
            ("primary model", "model_name"),
            ("started", "started"),
        )
        rows = [(label, info[key]) for label, key in keys if info.get(key) is not None]
        if info.get("classes"):
            rows.append(("classes", ", ".join(str(c) for c in info["classes"])))
        if info.get("modalities"):
            rows.append(("modalities", ", ".join(str(m) for m in info["modalities"])))
        parts.append(table(["", "value"], [(k, str(v)) for k, v in rows], css="repro"))
        versions = info.get("versions") or {}
        if versions:
            parts += [
                heading("Versions"),
                table(["package", "version"], [(k, str(v)) for k, v in versions.items()]),
            ]
    parts.append(heading("Resolved config"))
    config = run.get("config.yaml")
    if config is None:
        parts.append(missing("config.yaml", "the resolved configuration is not shown"))
    else:
        shown = shareable_config(config, run.modality_kinds, project_root(run.path))
        parts += [
            para(
                "Paths are relative to the project folder; each modality's encoder block lists only the keys its "
                "kind uses."
            ),
            Raw(f"<pre>{esc(shown)}</pre>"),
        ]
    if run.missing:
        parts.append(note("Files absent from the run folder: " + ", ".join(run.missing) + "."))
    parts.append(para(f"Run folder: {run.path.name}"))
    return section("reproducibility", "Reproducibility", parts)
