"""What a search leaves in its folder: search.json (budget, space, every trial, the front, the chosen student),
front.json (the Pareto front alone) and front.png (the recipe's metric against the searched cost: every trained
trial, the front, the budget and the teacher). Trial runs are ordinary run folders under trials/, so
``python -m distill.report <search folder>`` also draws them against the paper's points and the teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from distill.core.io import atomic_write, atomic_write_json
from distill.engine.search.settings import SearchSettings

__all__ = ["trial_record", "front_trials", "chosen_trial", "write_records", "plot_front", "front_figure"]


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as plain data: state, parameters, measured cost, metric and where it ran."""
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": "infeasible" if attrs.get("infeasible") else trial.state.name.lower(),
        "params": dict(trial.params),
        "cost": attrs.get("cost"),
        "metric": attrs.get("metric"),
        "values": list(trial.values) if trial.values is not None else None,
        **{key: attrs[key] for key in ("infeasible", "run_dir", "repeat_of", "error", "teacher_metric",
                                       "trained_mult_adds") if key in attrs},
    }


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trials: the Pareto front of two objectives, the best trial(s) of one."""
    if not any(trial.state == TrialState.COMPLETE for trial in study.get_trials(deepcopy=False)):
        return []
    # a repeated candidate stands once, as its first training
    return sorted((t for t in study.best_trials if "repeat_of" not in t.user_attrs), key=lambda trial: trial.number)


def chosen_trial(front: list[FrozenTrial]) -> FrozenTrial | None:
    """The student to retrain: the front's best metric (every trained trial is within budget); ties go to the
    cheaper one (the second objective, else the measured latency, else the mult-adds), then the earlier one."""
    if not front:
        return None

    def cheapness(trial: FrozenTrial) -> float:
        if len(trial.values) > 1:
            return trial.values[1]
        cost = trial.user_attrs.get("cost") or {}
        return cost.get("latency_ms") if cost.get("latency_ms") is not None else cost.get("mult_adds", 0)

    return min(front, key=lambda t: (-t.values[0], cheapness(t), t.number))


def write_records(search_dir: Path, settings: SearchSettings, study: optuna.Study, storage: str,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """search.json and front.json (atomically); returns search.json's content."""
    trials = study.get_trials(deepcopy=False)
    front = front_trials(study)
    chosen = chosen_trial(front)
    summary = {
        "study_name": settings.study_name,
        "storage": storage,
        "budget": settings.budget.as_dict(),
        "objectives": list(settings.objectives),
        "space": settings.space.as_dict(),
        "epochs_per_trial": settings.epochs,
        "full_schedule": settings.full_schedule,
        "seed": settings.seed,
        "trials": [trial_record(trial) for trial in trials],
        "front": [trial_record(trial) for trial in front],
        "chosen": trial_record(chosen) if chosen is not None else None,
        **extra,
    }
    atomic_write_json(Path(search_dir) / "search.json", summary)
    atomic_write_json(Path(search_dir) / "front.json", {"objectives": list(settings.objectives),
                                                        "budget": settings.budget.as_dict(),
                                                        "front": summary["front"]})
    return summary


def plot_front(summary: dict[str, Any], path: Path, metric_name: str) -> Path | None:
    """Writes ``front_figure`` to ``path`` (PNG); None when nothing trained."""
    figure = front_figure(summary, metric_name)
    if figure is None:
        return None
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


def front_figure(summary: dict[str, Any], metric_name: str) -> Figure | None:
    """The metric (%) against the searched cost: latency when measured, else mult-adds. None when nothing trained."""
    trained = [t for t in summary["trials"] if t["state"] == "complete" and t.get("metric") is not None]
    if not trained:
        return None
    latency = all((t.get("cost") or {}).get("latency_ms") is not None for t in trained)
    runtimes = sorted({t["cost"]["runtime"] for t in trained if t.get("cost")})
    key, label = ("latency_ms", f"latency (ms, batch 1, {' / '.join(runtimes)})") if latency else \
        ("mult_adds", "mult-adds (millions)")
    scale = 1.0 if latency else 1e-6

    def point(record: dict[str, Any]) -> tuple[float, float]:
        return record["cost"][key] * scale, 100 * record["metric"]

    def is_int8(record: dict[str, Any]) -> bool:
        return (record.get("cost") or {}).get("runtime") == "ort_int8"

    figure = Figure(figsize=(6.4, 4.4), dpi=120)  # no pyplot: no global figure state, no GUI backend
    axis = figure.subplots()
    for int8, marker, name in ((False, "o", "trials"), (True, "^", "trials, int8")):
        group = [point(t) for t in trained if is_int8(t) == int8]
        if group:
            axis.scatter(*zip(*group), color="tab:gray" if not int8 else "tab:orange", marker=marker, alpha=0.6,
                         label=name)
    front = [t for t in summary["front"] if t.get("metric") is not None]
    if front:
        ordered = sorted((point(t) for t in front))
        axis.plot(*zip(*ordered), marker="o", color="tab:blue", label="front")
        for record in front:
            params = record["params"]
            axis.annotate(f"{params['width']:g}-{params['resolution']}{' int8' if is_int8(record) else ''}",
                          point(record), fontsize=7, xytext=(3, 3), textcoords="offset points")
    # the limit as the search applied it: a budget.latency_of becomes a latency measured at the start
    limit = (summary.get("limits") or {}).get("latency" if latency else "mult_adds")
    if limit:
        axis.axvline(limit * scale, color="tab:red", linestyle="--", label="budget")
    teacher = next((t["teacher_metric"] for t in trained if t.get("teacher_metric") is not None), None)
    if teacher is not None:
        axis.axhline(100 * teacher, color="tab:green", linestyle=":", label="teacher")
    axis.set_xlabel(label)
    axis.set_ylabel(f"{metric_name} (%), {summary['epochs_per_trial']} epoch(s) per trial")
    axis.set_title(f"search {summary['study_name']}")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
