"""Sweeps on Hydra's launchers and the report of them: a 2-point joblib multirun, the SLURM launcher config."""

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module

from conftest import TINY_SMOKE
from distill.report import collect_runs, report_rows


@pytest.mark.slow
def test_joblib_multirun_of_two_widths_and_its_report(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", DISTILL_CACHE_DIR=str(tmp_path / "cache"))
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "distill", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY_SMOKE,
               "trainer.max_epochs=1", "latency_runs=3", "student.width_multiplier=0.5,0.25", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = report_rows(collect_runs(sweep), sweep)
    students = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["width"])
    assert [r["width"] for r in students] == [0.25, 0.5]
    for row in students:
        results = json.loads((sweep / row["run"] / "results.json").read_text())
        assert row["value"] == results["student"]["metrics"]["top1"]
        assert row["mult_adds_m"] == pytest.approx(results["student"]["mult_adds"] / 1e6, abs=1e-3)
        assert row["latency_ms"] > 0
    assert students[0]["mult_adds_m"] < students[1]["mult_adds_m"]
    report = subprocess.run([sys.executable, "-m", "distill.report", str(sweep)], capture_output=True, text=True)
    assert report.returncode == 0 and "| mobilenet_v1 | 0.25 | 32 | top1 |" in report.stdout
    assert (sweep / "pareto.png").is_file()


def test_slurm_launcher_and_optuna_sweeper_compose():
    with initialize_config_module(config_module="distill.conf", version_base="1.3"):
        cfg = compose("config", overrides=["recipe=smoke", "hydra/launcher=submitit_slurm",
                                           "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4"],
                      return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
        assert cfg.hydra.launcher.partition == "gpu" and cfg.hydra.launcher.gpus_per_node == 4
        search = compose("config", overrides=["hparams_search=smoke_optuna"], return_hydra_config=True)
        assert search.hydra.sweeper.direction == "maximize"
        assert set(search.hydra.sweeper.params) == {"loss.terms.kd.temperature", "loss.terms.ground_truth.weight"}
