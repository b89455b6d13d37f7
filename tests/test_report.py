"""python -m distill.report on results.json files written here: values, paper rows, failed runs, bad folders."""

import csv
import io
import json

import pytest

from distill.report import collect_runs, main, report_rows


def _results(width, resolution, value, mult_adds, params, latency=None):
    student = {"name": "mobilenet_v1", "width_multiplier": width, "resolution": resolution,
               "mult_adds": mult_adds, "params": params, "metrics": {"accuracy": value, "val": 0.5}}
    if latency is not None:
        student["latency_ms"] = latency
    return {"recipe": "facenet", "primary_metric": "accuracy", "student": student,
            "teacher": {"name": "inception_resnet_v1", "resolution": 160, "mult_adds": 1_417_662_304,
                        "params": 23_434_000, "metrics": {"accuracy": 0.9}, "latency_ms": 80.0},
            "student_checkpoint": "student.ckpt", "wall_time_s": 1.0, "config": {}}


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    runs = {"0": _results(1.0, 160, 0.85, 286_000_000, 4_900_000, latency=12.5),
            "1": _results(0.75, 128, 0.80, 108_000_000, 3_800_000)}  # an older file without latency
    for name, results in runs.items():
        (root / name).mkdir(parents=True)
        (root / name / "results.json").write_text(json.dumps(results))
    (root / "2" / ".hydra").mkdir(parents=True)  # a job that died before writing results
    (root / "2" / "__main__.log").write_text("[2026][distill][ERROR] - FloatingPointError: loss term 'kd' became nan\n")
    return root


def test_rows_carry_the_results_and_the_paper_rows(sweep):
    rows = report_rows(collect_runs(sweep), sweep)
    teacher, first, second, failed = rows
    assert teacher["status"] == "teacher" and teacher["value"] == 0.9 and teacher["paper"] == 0.83
    assert teacher["mult_adds_m"] == pytest.approx(1417.662) and teacher["paper_mult_adds_m"] == 1600
    assert (first["width"], first["resolution"], first["value"]) == (1.0, 160, 0.85)
    assert first["paper"] == 0.794 and first["delta"] == pytest.approx(0.85 - 0.794)
    assert (first["mult_adds_m"], first["paper_mult_adds_m"], first["params_m"]) == (286.0, 286, 4.9)
    assert first["latency_ms"] == 12.5
    assert second["paper"] == 0.725 and second["latency_ms"] is None
    assert failed["run"] == "2" and "FloatingPointError" in failed["status"]


def test_cli_writes_markdown_csv_and_plot(sweep, tmp_path, capsys):
    assert main([str(sweep), "--format", "csv", "--out", str(tmp_path / "out")]) == 0
    printed = list(csv.DictReader(io.StringIO(capsys.readouterr().out.split("\n\n")[0])))
    assert [r["status"].split(":")[0] for r in printed] == ["teacher", "ok", "ok", "failed"]
    assert printed[1]["paper"] == "0.794" and printed[2]["latency_ms"] == ""
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| mobilenet_v1 | 1.0 | 160 | accuracy | 85.0% | 79.4% | +5.6 | 286.0 / 286 | 4.9 / 4.9 | 12.5 |" in markdown
    assert "**failed" in markdown
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_or_missing_folder_says_what_was_expected(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no results.json below" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_every_paper_table_is_set_beside_its_recipes_primary_metric():
    """The paper column is filled only when the table's metric is the recipe's own primary metric."""
    from hydra.utils import instantiate

    from conftest import compose_config
    from distill.paper import PAPER_TABLES

    for recipe, table in PAPER_TABLES.items():
        task = instantiate(compose_config([f"recipe={recipe}"]).task)
        assert table.compares_to == task.primary_metric, recipe


def _dogs(width, resolution, value, *, data_name=None, target=None):
    results = _results(width, resolution, value, 569_000_000, 3_300_000)
    results.update(recipe="dogs", primary_metric="top1")
    results["student"]["metrics"] = {"top1": value}
    results["teacher"].update(name="resnet10t", metrics={"top1": 0.9})
    if data_name is not None:
        results["data"] = {"name": data_name, "splits": {"train": 10, "test": 5}}
    if target is not None:
        results["config"] = {"data": {"_target_": target}}
    return results


def _write(root, runs):
    for name, results in runs.items():
        (root / name).mkdir(parents=True)
        (root / name / "results.json").write_text(json.dumps(results))
    return root


def test_a_sweep_on_own_data_is_never_set_beside_the_paper(tmp_path, capsys):
    from distill.report import pareto_title

    root = _write(tmp_path / "birds", {
        "0": _dogs(1.0, 224, 0.7, target="distill.data.modules.fine_grained.ImageFolderDataModule"),
        "1": _dogs(0.75, 224, 0.6, data_name="ImageFolderDataModule")})
    records = collect_runs(root)
    teacher, first, second = report_rows(records, root)
    for row in (teacher, first, second):
        assert row["paper"] is None and row["delta"] is None and row["own_data"] is True
        assert row["data"] == "ImageFolderDataModule"
    assert first["paper_mult_adds_m"] is None
    assert pareto_title(records) == ("dogs on own data (ImageFolderDataModule)", None)
    assert main([str(root), "--format", "csv"]) == 0
    markdown = (root / "report.md").read_text()
    assert "| mobilenet_v1 | 1.0 | 224 | top1 | 70.0% | own data | — |" in markdown
    assert "83.3%" not in markdown and "Table 10" not in markdown
    printed = list(csv.DictReader(io.StringIO(capsys.readouterr().out.split("\n\n")[0])))
    assert {row["own_data"] for row in printed} == {"True"}


def test_the_recipes_own_data_is_set_beside_the_paper(tmp_path):
    from distill.report import pareto_title

    root = _write(tmp_path / "dogs", {
        "0": _dogs(1.0, 224, 0.8, target="distill.data.modules.fine_grained.StanfordDogsDataModule"),
        "1": _dogs(0.75, 192, 0.7, data_name="SyntheticFineGrainedDataModule")})
    records = collect_runs(root)
    rows = report_rows(records, root)
    teachers = [row for row in rows if row["status"] == "teacher"]
    first, second = [row for row in rows if row["status"] == "ok"]
    assert [t["data"] for t in teachers] == ["StanfordDogsDataModule", "SyntheticFineGrainedDataModule"]
    assert all(t["paper"] == 0.84 for t in teachers)  # one teacher row per data set, each beside Inception V3
    assert first["paper"] == 0.833 and second["paper"] == 0.805
    assert not first["own_data"] and first["data"] == "StanfordDogsDataModule"
    title, table = pareto_title(records)
    assert title == "dogs vs paper Table 10 (Stanford Dogs)" and table is not None
    # one run on other data in the sweep: the plot is no longer the paper's, that run's row has no paper value
    (root / "2").mkdir()
    (root / "2" / "results.json").write_text(json.dumps(_dogs(1.0, 224, 0.5, data_name="ImageFolderDataModule")))
    records = collect_runs(root)
    rows = report_rows(records, root)
    assert [row["paper"] for row in rows if row["status"] == "ok"] == [0.833, 0.805, None]
    assert pareto_title(records) == ("dogs on own data (ImageFolderDataModule)", None)
