"""Training: plan (strategy, precision, data) -> fit -> thresholds and report -> export.

| module | job |
| --- | --- |
| `config` | `TrainConfig` and the flags generated from it |
| `task` | the model, loss, metrics, optimizer and input pipelines |
| `trainer` | the run's plan, callbacks, fit and resume |
| `evaluator` | 8-view prediction of val, thresholds, report |
"""

from protein_location import export
from protein_location.core import manifest as manifest_lib
from protein_location.training import evaluator, trainer
from protein_location.training.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(config):
    """Trains, tunes thresholds on val, writes the report and (optionally) the export.

    Returns the report dict (None on a multi-worker run's non-chief workers:
    the chief writes the model, report and export).
    """
    config, plan = trainer.plan_run(config)
    fitted = trainer.fit_model(config, plan)
    if fitted is None:
        return None
    model, fit, fit_seconds = fitted
    report, single_view, tta = evaluator.write_report(config, plan, model, fit, fit_seconds)
    if config.export_dir:
        export.export_model(model, single_view.thresholds, config.export_dir, config.export_formats,
                            class_names=manifest_lib.class_names(plan.manifest),
                            tta_thresholds=tta.thresholds if config.tta == 8 else None)
    return report
