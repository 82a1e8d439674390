"""Subject-wise evaluation: splits, window → record → subject aggregation, metrics with
subject-bootstrap CIs, the cross-validation runner and the HTML/JSON report.

Works on probability arrays and index tables only (no torch): any object with
``fit(windows)`` and ``predict_windows(windows)`` can be cross-validated.
"""

from emgdx.evaluation.aggregate import LEVELS, METHODS, aggregate, aggregate_all, window_table
from emgdx.evaluation.cv import (
    CV_SCHEMES,
    CVResult,
    PipelineLike,
    cross_validate,
    evaluate_predictions,
    package_versions,
    windows_hash,
)
from emgdx.evaluation.fewshot import (
    FEW_SHOTS,
    FewShotResult,
    few_shot_curve,
    fine_tuning_config,
)
from emgdx.evaluation.metrics import (
    SCALAR_METRICS,
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    evaluate_table,
    flat_metrics,
    per_subject_table,
    roc_auc_ovr,
    roc_points,
)
from emgdx.evaluation.report import load_results, render_html, save_results_json, write_report
from emgdx.evaluation.splits import (
    LeakyEvaluationWarning,
    SubjectLeakError,
    assert_subject_disjoint,
    grouped_kfold,
    inner_validation_split,
    leaky_random_window_split,
    leave_one_site_out,
    loso,
    site_stratified_kfold,
    subject_labels,
)

__all__ = [
    "CV_SCHEMES",
    "FEW_SHOTS",
    "LEVELS",
    "METHODS",
    "SCALAR_METRICS",
    "CVResult",
    "FewShotResult",
    "LeakyEvaluationWarning",
    "PipelineLike",
    "SubjectLeakError",
    "aggregate",
    "aggregate_all",
    "assert_subject_disjoint",
    "bootstrap_ci",
    "classification_metrics",
    "confusion_matrix",
    "cross_validate",
    "evaluate_predictions",
    "evaluate_table",
    "few_shot_curve",
    "fine_tuning_config",
    "flat_metrics",
    "grouped_kfold",
    "inner_validation_split",
    "leaky_random_window_split",
    "leave_one_site_out",
    "load_results",
    "loso",
    "package_versions",
    "per_subject_table",
    "render_html",
    "roc_auc_ovr",
    "roc_points",
    "save_results_json",
    "site_stratified_kfold",
    "subject_labels",
    "window_table",
    "windows_hash",
    "write_report",
]
