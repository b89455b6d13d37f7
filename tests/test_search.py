"""python -m distill.search: the budget filter against distill.cost's counts, resuming from the storage, seeded
trials, the bad-budget refusals, and a 3-trial search end to end on the tiny smoke recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module

from distill.cost import profile
from distill.engine.search import BudgetError, run_search
from distill.engine.search.records import front_figure
from distill.models import create_student
from distill.report import main as report_main

from conftest import TINY_SMOKE


def _cfg(tmp_path, *extra: str):
    with initialize_config_module(config_module="distill.conf", version_base="1.3"):
        return compose(config_name="search", overrides=TINY_SMOKE + [f"cache.dir={tmp_path / 'cache'}",
                                                                     "search.epochs=1", *extra])


def _mult_adds(width: float, resolution: int) -> int:
    """The smoke student's mult-adds as ``python -m distill.cost`` counts them (ten classes)."""
    return profile(create_student("mobilenet_v1", width_multiplier=width, num_classes=10),
                   (3, resolution, resolution)).mult_adds


class FakeTrainer:
    """Stands in for a distillation run: a metric that grows with the student's size, and a record of the calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, run_dir):
        width, resolution = float(cfg.student.width_multiplier), int(cfg.data.resolution)
        self.calls.append((width, resolution, int(cfg.trainer.max_epochs)))
        self.compress = getattr(self, "compress", []) + [(list(cfg.compress.methods), cfg.compress.target_mult_adds)]
        return {"primary_metric": "top1", "student": {"metrics": {"top1": round(width * resolution / 32, 6)}},
                "teacher": {"metrics": {"top1": 0.9}}}


def _trials(summary, state=None):
    return [t for t in summary["trials"] if state is None or t["state"] == state]


def test_budget_filter_rejects_exactly_the_students_over_the_mult_adds_budget(tmp_path):
    budget = _mult_adds(0.5, 24)
    train = FakeTrainer()
    summary = run_search(_cfg(tmp_path, f"budget.mult_adds={budget}", "search.trials=4", "search.retrain=false"),
                         search_dir=tmp_path / "search", train=train)
    trained, rejected = _trials(summary, "complete"), _trials(summary, "infeasible")
    assert len(trained) == 4 and rejected, "seed 0 draws students on both sides of the budget"
    for trial in summary["trials"]:
        width, resolution = trial["params"]["width"], trial["params"]["resolution"]
        assert trial["cost"]["mult_adds"] == _mult_adds(width, resolution)
        assert resolution % 8 == 0 and (width / 0.0625) == int(width / 0.0625)
    assert all(t["cost"]["mult_adds"] <= budget for t in trained)
    assert all(t["cost"]["mult_adds"] > budget and t["infeasible"]["mult_adds"]["limit"] == budget
               for t in rejected)
    # only the students within budget were trained, each for search.epochs
    assert sorted(train.calls) == sorted((t["params"]["width"], t["params"]["resolution"], 1) for t in trained)
    assert summary["smallest"]["mult_adds"] == _mult_adds(0.25, 16)
    chosen = summary["chosen"]
    assert chosen["metric"] == max(t["metric"] for t in trained)
    written = json.loads((tmp_path / "search" / "search.json").read_text())
    assert written["chosen"]["number"] == chosen["number"]


def test_full_schedule_trials_are_the_students_and_none_is_trained_again(tmp_path):
    class WritingTrainer(FakeTrainer):
        def __call__(self, cfg, run_dir):
            results = super().__call__(cfg, run_dir)
            run_dir.mkdir(parents=True)
            (run_dir / "results.json").write_text(json.dumps(results))
            return results

    train = WritingTrainer()
    cfg = _cfg(tmp_path, "budget.mult_adds=5000000", "search.trials=3", "search.epochs=full", "trainer.max_epochs=3")
    summary = run_search(cfg, search_dir=tmp_path / "s", train=train)
    trained = _trials(summary, "complete")
    assert len(train.calls) == len(trained) == 3  # three trials, no fourth run to retrain the chosen one
    assert {epochs for _, _, epochs in train.calls} == {3}  # each trial ran the recipe's schedule
    assert summary["epochs_per_trial"] == 3 and summary["full_schedule"] is True
    chosen = summary["chosen"]
    assert summary["retrained"] == {"run_dir": chosen["run_dir"], "trial": chosen["number"],
                                    "metric": chosen["metric"], "primary_metric": "top1", "trained_again": False}
    assert not (tmp_path / "s" / "best").exists()
    written = json.loads((tmp_path / "s" / chosen["run_dir"] / "results.json").read_text())
    assert written["search"]["chosen"]["number"] == chosen["number"]  # the chosen trial's folder holds the search
    with pytest.raises(ValueError, match=r"search.epochs must be a whole number of epochs or 'full' \(the recipe's "
                                         r"trainer.max_epochs=3\), got 'all'"):
        run_search(_cfg(tmp_path, "budget.mult_adds=5000000", "search.epochs=all", "trainer.max_epochs=3"),
                   search_dir=tmp_path / "t", train=train)


def test_a_resumed_search_keeps_its_trials_and_draws_what_an_uninterrupted_one_would(tmp_path):
    settings = ["budget.mult_adds=5000000", "search.retrain=false"]
    first = run_search(_cfg(tmp_path, *settings, "search.trials=2"), search_dir=tmp_path / "a", train=FakeTrainer())
    resumed_train = FakeTrainer()
    resumed = run_search(_cfg(tmp_path, *settings, "search.trials=3"), search_dir=tmp_path / "a",
                         train=resumed_train)
    trained = [t for t in _trials(resumed, "complete") if "repeat_of" not in t]
    assert len(trained) == 3
    done_before = [t for t in _trials(first, "complete") if "repeat_of" not in t]
    assert [(t["params"], t["metric"]) for t in trained[:2]] == [(t["params"], t["metric"]) for t in done_before]
    assert len(resumed_train.calls) == 1  # only the third student
    straight = run_search(_cfg(tmp_path, *settings, "search.trials=3"), search_dir=tmp_path / "b",
                          train=FakeTrainer())
    assert [t["params"] for t in straight["trials"]] == [t["params"] for t in resumed["trials"]]


def test_a_candidate_drawn_again_is_not_trained_again_and_does_not_count(tmp_path):
    # two candidates in the space: 0.25 and 0.3125 MobileNet-16
    space = ["search.space.width=[0.25,0.3125]", "search.space.resolution=[16,16]", "budget.mult_adds=100000000",
             "search.retrain=false"]
    train = FakeTrainer()
    summary = run_search(_cfg(tmp_path, *space, "search.trials=2", "search.max_infeasible=20"),
                         search_dir=tmp_path / "two", train=train)
    assert sorted(train.calls) == [(0.25, 16, 1), (0.3125, 16, 1)]  # both trained, once each
    repeats = [t for t in _trials(summary, "complete") if "repeat_of" in t]
    assert all(t["metric"] == summary["trials"][t["repeat_of"]]["metric"] for t in repeats)
    assert len({json.dumps(t["params"], sort_keys=True) for t in json.loads(
        (tmp_path / "two" / "front.json").read_text())["front"]}) == len(json.loads(
        (tmp_path / "two" / "front.json").read_text())["front"])  # the front lists a candidate once
    # asked for more students than the space holds: stops after search.max_infeasible repeats, nothing retrained
    exhausted_train = FakeTrainer()
    exhausted = run_search(_cfg(tmp_path, *space, "search.trials=3", "search.max_infeasible=3"),
                           search_dir=tmp_path / "exhausted", train=exhausted_train)
    assert len(exhausted_train.calls) == 2
    assert sum("repeat_of" in t for t in _trials(exhausted, "complete")) == 3


def test_a_latency_budget_measured_from_a_reference_student_filters_by_measured_latency(tmp_path):
    # ONNX Runtime on one thread: the 1.0 MobileNet-32 is several times the smallest candidate there, while in eager
    # PyTorch both are mostly per-layer overhead and a busy machine can order them either way
    summary = run_search(_cfg(tmp_path, "budget.latency_of=[1.0,32]", "budget.runtime=ort_fp32", "search.threads=1",
                              "search.latency_runs=5", "search.trials=2", "search.retrain=false"),
                         search_dir=tmp_path / "s", train=FakeTrainer())
    limit = summary["limits"]["latency"]
    assert limit > 0 and summary["budget"]["latency_of"] == [1.0, 32]
    for trial in summary["trials"]:
        measured = trial["cost"]["latency_ms"]
        assert trial["cost"]["runtime"] == "ort_fp32" and measured > 0
        assert (trial["state"] == "infeasible") == (measured > limit)


@pytest.mark.slow
def test_a_pruned_candidate_is_measured_pruned_and_trained_with_the_compress_stage(tmp_path):
    train = FakeTrainer()
    summary = run_search(_cfg(tmp_path, "budget.mult_adds=20000000", "search.space.prune_ratio=[0.2,0.4]",
                              "search.trials=2", "search.retrain=false"), search_dir=tmp_path / "s", train=train)
    trained = _trials(summary, "complete")
    assert len(trained) == 2
    for trial, (methods, target) in zip(trained, train.compress):
        ratio = trial["params"]["prune_ratio"]
        full = _mult_adds(trial["params"]["width"], trial["params"]["resolution"])
        assert abs(trial["cost"]["mult_adds"] / full - (1 - ratio)) <= 0.02 + 1e-9  # compress.tolerance
        assert methods == ["prune"] and target == pytest.approx(1 - ratio)


def test_a_searched_precision_measures_and_ships_each_candidate_in_its_own_runtime(tmp_path):
    train = FakeTrainer()
    summary = run_search(_cfg(tmp_path, "budget.latency_of=[1.0,32]", "budget.runtime=ort_fp32",
                              "search.space.int8=true", "search.latency_runs=5", "search.threads=1",
                              "search.trials=5", "search.startup_trials=5"), search_dir=tmp_path / "s", train=train)
    measured = [t for t in summary["trials"] if t["cost"]]
    assert {t["params"]["int8"] for t in measured} == {False, True}, "seed 0 draws both precisions"
    for trial in measured:
        assert trial["cost"]["runtime"] == ("ort_int8" if trial["params"]["int8"] else "ort_fp32")
        assert (trial["state"] == "infeasible") == (trial["cost"]["latency_ms"] > summary["limits"]["latency"])
    trained = [t for t in _trials(summary, "complete") if "repeat_of" not in t]
    calls = train.compress[:len(trained)]
    for trial, (methods, _) in zip(trained, calls):  # an int8 candidate is trained, then quantised and scored int8
        assert methods == (["int8_ptq"] if trial["params"]["int8"] else [])
    chosen = summary["chosen"]["params"]
    assert train.calls[-1][:2] == (chosen["width"], chosen["resolution"])  # the retrained student
    assert train.compress[-1][0] == (["int8_ptq"] if chosen["int8"] else [])
    assert summary["space"]["int8"] == [False, True]


@pytest.mark.parametrize("overrides,match", [
    (["budget.runtime=torch", "search.space.int8=true"], "must be an ONNX Runtime latency"),
    (["search.space.int8=sometimes"], "search.space.int8 must be true"),
])
def test_a_searched_precision_is_refused_where_it_cannot_be_measured(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        run_search(_cfg(tmp_path, "budget.latency_ms=5", *overrides), search_dir=tmp_path / "s", train=FakeTrainer())


def test_the_command_refuses_a_bad_budget_with_its_message(tmp_path):
    done = subprocess.run([sys.executable, "-m", "distill.search", "recipe=smoke", "budget.params=-1",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "budget.params must be > 0, got -1" in done.stdout + done.stderr


def test_a_study_is_not_resumed_with_other_settings(tmp_path):
    run_search(_cfg(tmp_path, "budget.mult_adds=5000000", "search.trials=1", "search.retrain=false"),
               search_dir=tmp_path / "s", train=FakeTrainer())
    with pytest.raises(ValueError, match="other settings"):
        run_search(_cfg(tmp_path, "budget.mult_adds=4000000", "search.trials=2", "search.retrain=false"),
                   search_dir=tmp_path / "s", train=FakeTrainer())


def test_two_objectives_give_a_pareto_front(tmp_path):
    summary = run_search(_cfg(tmp_path, "search.objectives=[metric,mult_adds]", "search.trials=4",
                              "search.retrain=false"), search_dir=tmp_path / "s", train=FakeTrainer())
    front = json.loads((tmp_path / "s" / "front.json").read_text())["front"]
    assert front and [t["number"] for t in front] == [t["number"] for t in summary["front"]]
    trained = _trials(summary, "complete")
    for member in front:  # no trained trial is at least as good on both objectives and better on one
        metric, cost = member["values"]
        assert not any(t["values"][0] >= metric and t["values"][1] <= cost and t["values"] != member["values"]
                       for t in trained)
    assert (tmp_path / "s" / "front.png").is_file()


@pytest.mark.parametrize("budget,match", [
    ("budget.mult_adds=-5", "budget.mult_adds must be > 0"),
    ("budget.latency_ms=0", "budget.latency_ms must be > 0"),
    ("budget.runtime=tflite", "budget.runtime must be one of"),
])
def test_a_malformed_budget_is_refused_before_anything(tmp_path, budget, match):
    train = FakeTrainer()
    with pytest.raises(ValueError, match=match):
        run_search(_cfg(tmp_path, budget), search_dir=tmp_path / "s", train=train)
    assert train.calls == [] and not (tmp_path / "s").exists()


def test_no_budget_for_one_objective_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no budget"):
        run_search(_cfg(tmp_path), search_dir=tmp_path / "s", train=FakeTrainer())


def test_a_budget_below_the_smallest_student_names_the_smallest_feasible_one(tmp_path):
    train = FakeTrainer()
    smallest = _mult_adds(0.25, 16)
    with pytest.raises(BudgetError, match=f"smallest feasible budget.mult_adds is {smallest}"):
        run_search(_cfg(tmp_path, f"budget.mult_adds={smallest - 1}"), search_dir=tmp_path / "s", train=train)
    with pytest.raises(BudgetError, match=r"smallest feasible budget.latency_ms is \d+\.\d+"):
        run_search(_cfg(tmp_path, "budget.latency_ms=0.000001", "budget.runtime=torch", "search.latency_runs=3"),
                   search_dir=tmp_path / "s", train=train)
    assert train.calls == [] and not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_three_trial_search_end_to_end_on_the_smoke_recipe(tmp_path):
    budget = _mult_adds(0.5, 24)
    summary = run_search(_cfg(tmp_path, f"budget.mult_adds={budget}", "search.trials=3", "trainer.max_epochs=1",
                              "search.space.width=[0.25,0.75]"), search_dir=tmp_path / "s")
    folder = tmp_path / "s"
    trained = _trials(summary, "complete")
    assert len(trained) == 3
    for trial in trained:  # every trained trial is an ordinary run folder
        results = json.loads((folder / trial["run_dir"] / "results.json").read_text())
        assert results["student"]["metrics"]["top1"] == trial["metric"]
        assert results["student"]["width_multiplier"] == trial["params"]["width"]
        assert results["student"]["resolution"] == trial["params"]["resolution"]
        assert results["config"]["trainer"]["max_epochs"] == 1
        assert results["student"]["mult_adds"] == trial["cost"]["mult_adds"] <= budget
        assert results["teacher"]["resolution"] == 32  # pinned: one fitted teacher and one output cache
    best = json.loads((folder / "best" / "results.json").read_text())
    assert best["search"]["chosen"]["number"] == summary["chosen"]["number"]
    assert best["search"]["budget"]["mult_adds"] == budget
    assert len(best["search"]["trials"]) == len(summary["trials"])
    assert best["student"]["width_multiplier"] == summary["chosen"]["params"]["width"]
    assert (folder / "best" / "student.ckpt").is_file()
    for name in ("search.json", "front.json", "front.png", "study.db"):
        assert (folder / name).is_file()
    assert report_main([str(folder), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "pareto.png").is_file()


def _summary(limits: dict[str, float]) -> dict:
    def record(number, width, resolution, latency, runtime, metric):
        return {"number": number, "state": "complete", "metric": metric, "teacher_metric": 0.9,
                "params": {"width": width, "resolution": resolution, "int8": runtime == "ort_int8"},
                "cost": {"mult_adds": 10_000_000 * (number + 1), "params": 1, "latency_ms": latency,
                         "runtime": runtime}}
    trials = [record(0, 0.75, 80, 1.10, "ort_fp32", 0.8798), record(1, 1.0, 56, 0.72, "ort_int8", 0.8815),
              record(2, 0.5, 48, 0.40, "ort_fp32", 0.8713)]
    return {"study_name": "s", "epochs_per_trial": 9, "trials": trials, "front": [trials[1]], "limits": limits}


def test_front_figure_draws_the_budget_as_applied_and_int8_trials_apart():
    axis = front_figure(_summary({"latency": 1.16}), "accuracy").axes[0]
    budget = [line for line in axis.get_lines() if line.get_label() == "budget"]
    assert len(budget) == 1 and list(budget[0].get_xdata()) == [1.16, 1.16]  # a measured latency_of limit, in ms
    teacher = [line for line in axis.get_lines() if line.get_label() == "teacher"]
    assert list(teacher[0].get_ydata()) == [90.0, 90.0]
    groups = {collection.get_label(): collection.get_offsets().tolist() for collection in axis.collections}
    assert groups["trials"] == [pytest.approx([1.10, 87.98]), pytest.approx([0.40, 87.13])]
    assert groups["trials, int8"] == [pytest.approx([0.72, 88.15])]
    assert "ort_fp32 / ort_int8" in axis.get_xlabel()


def test_front_figure_draws_a_mult_add_budget_in_millions_and_nothing_without_trials():
    summary = _summary({"mult_adds": 25_000_000})
    for trial in summary["trials"]:
        trial["cost"]["latency_ms"] = None
    axis = front_figure(summary, "accuracy").axes[0]
    budget = [line for line in axis.get_lines() if line.get_label() == "budget"]
    assert list(budget[0].get_xdata()) == [25.0, 25.0]
    assert front_figure({**summary, "trials": []}, "accuracy") is None
