"""The training log as CSV, kept across a resume: an interrupted run's rows stay and the resumed run appends.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts; a resumed run would lose the log of
everything before the interruption. A fresh run in a used folder never reaches this: the engine moves the earlier
run's files aside first (``distill/engine/run_folder.py``).
"""

from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

__all__ = ["RunCSVLogger"]


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an existing metrics.csv and its columns (new columns rewrite the header, rows are kept)."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(set(header))


class RunCSVLogger(CSVLogger):
    """CSVLogger whose ``metrics.csv`` survives a resume (rows are appended, never deleted)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
