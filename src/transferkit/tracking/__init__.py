"""Experiment tracking beyond the run folder. TensorBoard event files (``output.tensorboard``) are written by
the training loop itself; :mod:`transferkit.tracking.mlflow` logs each finished fit, and grids of fits
(``transferkit compare``) as a parent run with one child run per cell, to MLflow when ``tracking.mlflow`` is
set. Tracking never fails a run: a tracking error is one warning.
"""

from transferkit.tracking.mlflow import log_parent_results, log_run, parent_run

__all__ = ["log_parent_results", "log_run", "parent_run"]
