"""run_search(cfg): the best student for a budget.

    check the request  ->  measure the smallest student (a budget below it is refused)  ->  trials:
    draw a candidate -> measure its cost -> over budget: rejected untrained (PRUNED, "infeasible")
                                          -> else: a short distillation run (trials/<number>/) -> its metric
    ->  search.json, front.json, front.png  ->  the chosen student retrained with the recipe's schedule (best/)

Each trial is the engine's own ``run(cfg)`` on the recipe's config with the candidate's width and resolution; the
teacher's resolution is pinned, so the fitted teacher and its cached outputs are computed once and shared.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from distill.core.io import atomic_write_json
from distill.engine.build import build_data_and_task, run_folder
from distill.engine.compression import check_compression, parse_request
from distill.engine.quiet import quiet_third_party
from distill.engine.run import run
from distill.engine.search.measure import Cost, StudentFactory, latency_ms, measure
from distill.engine.search.records import chosen_trial, front_trials, plot_front, write_records
from distill.engine.search.settings import SearchSettings, parse_settings
from distill.engine.search.space import Candidate, from_params, smallest, suggest
from distill.engine.search.study import (
           LIMITS_ATTR,
           Heartbeat,
           count,
           fail_dead_trials,
           open_study,
           public_url,
           sampler_for,
           storage_url,
)
from distill.engine.search.trials import shipped_metric, teacher_resolution, trial_config
from distill.tasks.base import Task

__all__ = ["BudgetError", "run_search", "Trainer"]

log = logging.getLogger(__name__)

# What trains one candidate: (run config, run folder) -> results.json content (the engine's run by default).
Trainer = Callable[[DictConfig, Path], dict[str, Any]]

_UNITS = {"latency": "ms", "mult_adds": "mult-adds", "params": "params"}
_KEYS = {"latency": "budget.latency_ms", "mult_adds": "budget.mult_adds", "params": "budget.params"}


class BudgetError(ValueError):
    """A budget no student of the search space fits."""


def _engine_run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return run(cfg, run_dir=run_dir)


def _check_student(cfg: DictConfig, task: Task) -> dict[str, Any]:
    student = OmegaConf.to_container(cfg.student, resolve=True)
    if "width_multiplier" not in student:
        raise ValueError(f"the search scales the student's width_multiplier, which student "
                         f"{student.get('name') or student.get('_target_')!r} has not: use student=mobilenet_v1")
    if not task.compressible:
        raise ValueError(f"the search measures image-in, tensor-out students; the {task.name} task's student is "
                         f"not one")
    return student


def _factory(cfg: DictConfig, task: Task, datamodule: Any, student_cfg: dict[str, Any]) -> StudentFactory:
    """The student builder at any width, with the output size the recipe's teacher gives it."""
    teacher_res = int(datamodule.teacher_resolution)
    teacher, _, _ = task.build_model(OmegaConf.to_container(cfg.teacher.builder, resolve=True),
                                     num_classes=task.teacher_num_classes(datamodule), resolution=teacher_res)
    num_classes = task.student_num_classes(datamodule, task.output_dim(teacher, teacher_res))
    settings = OmegaConf.to_container(cfg.compress, resolve=True) if cfg.get("compress") is not None else {}
    return StudentFactory(task, student_cfg, num_classes, int(cfg.seed),
                          parse_request({**settings, "methods": ["prune"]}))


def _limits(settings: SearchSettings, factory: StudentFactory, threads: int) -> dict[str, float]:
    """The budget's limits by cost name; ``latency_of`` becomes a latency measured here, now."""
    limits = dict(settings.budget.limits)
    if settings.budget.latency_of is not None:
        width, resolution = settings.budget.latency_of
        reference = Candidate(width, resolution, int8=settings.budget.runtime == "ort_int8")
        limits["latency"] = latency_ms(factory.network(reference), resolution, settings.budget.runtime,
                                       threads=threads, runs=settings.latency_runs,
                                       float_convs=factory.compress.float_convs)
        log.info("Budget: the latency of the %s in %s, measured here: %.3f ms", reference.label,
                 settings.budget.runtime, limits["latency"])
    return limits


def _check_budget(settings: SearchSettings, factory: StudentFactory, limits: dict[str, float],
                  threads: int) -> tuple[Candidate, Cost]:
    """The smallest student's cost (the cheaper precision's, when the precision is searched); BudgetError when even
    it is over a limit (before any training)."""
    costs = {candidate: measure(factory, candidate, settings.runtime_of(candidate.int8),
                                with_latency="latency" in limits, threads=threads, runs=settings.latency_runs)
             for candidate in smallest(settings.space)}
    for name, limit in limits.items():
        cheapest, cost = min(costs.items(), key=lambda item: item[1].value(name))
        value = cost.value(name)
        if value > limit:
            where = f" in {cost.runtime} with {threads} thread(s) on this machine" if name == "latency" else ""
            shown = f"{value:.3f}" if name == "latency" else f"{value:d}"
            asked = f"{limit:.3f}" if name == "latency" else f"{int(limit):d}"
            raise BudgetError(
                f"{_KEYS[name]}={asked} is below the smallest student of the search space: the {cheapest.label} "
                f"has {shown} {_UNITS[name]}{where}; the smallest feasible {_KEYS[name]} is {shown} (or lower "
                f"search.space.width / search.space.resolution)")
    return min(costs.items(), key=lambda item: tuple(item[1].value(name) for name in limits) or (item[1].mult_adds,))


def _over_budget(cost: Cost, limits: dict[str, float]) -> dict[str, dict[str, float]]:
    return {name: {"cost": cost.value(name), "limit": limit} for name, limit in limits.items()
            if cost.value(name) > limit}


class _Search:
    """One worker's trials on the shared study."""

    def __init__(self, cfg: DictConfig, settings: SearchSettings, search_dir: Path, factory: StudentFactory,
                 limits: dict[str, float], threads: int, train: Trainer) -> None:
        self.cfg, self.settings, self.search_dir, self.factory = cfg, settings, search_dir, factory
        self.limits, self.threads, self.train = limits, threads, train
        self.pinned = teacher_resolution(cfg)
        self.primary = factory.task.primary_metric

    def config(self, candidate: Candidate, epochs: int | None) -> DictConfig:
        return trial_config(self.cfg, candidate, epochs=epochs, pinned_teacher_resolution=self.pinned)

    def trial_epochs(self) -> int | None:
        """A trial's schedule: search.epochs, or None (the recipe's own run, latency columns and all) for 'full'."""
        return None if self.settings.full_schedule else self.settings.epochs

    def trials(self, study: optuna.Study) -> None:
        settings = self.settings
        while True:
            fail_dead_trials(study)
            existing = study.get_trials(deepcopy=False)
            # a candidate drawn again is answered from its first training and does not count as a trained trial
            repeats = sum(1 for t in existing if t.state == TrialState.COMPLETE and "repeat_of" in t.user_attrs)
            done, rejected = count(existing, TrialState.COMPLETE) - repeats, count(existing, TrialState.PRUNED)
            if done >= settings.trials:
                log.info("Search: %d trained trial(s) of %d done, %d rejected over budget, %d repeated candidate(s)",
                         done, settings.trials, rejected, repeats)
                return
            if rejected >= settings.max_infeasible:
                log.warning("Search stopped: %d trials were over budget (search.max_infeasible); %d trained",
                            rejected, done)
                return
            if repeats >= settings.max_infeasible:
                log.warning("Search stopped: the sampler drew %d candidates trained before (search.max_infeasible); "
                            "%d trained: the space is exhausted or too small", repeats, done)
                return
            study.sampler = sampler_for(settings, len(existing))
            trial = study.ask()
            with Heartbeat(study, trial):
                self.trial(study, trial)

    def trial(self, study: optuna.Study, trial: optuna.trial.Trial) -> None:
        settings = self.settings
        candidate = suggest(trial, settings.space)
        try:
            cost = measure(self.factory, candidate, settings.runtime_of(candidate.int8),
                           with_latency=settings.needs_latency,
                           threads=self.threads, runs=settings.latency_runs)
        except Exception as error:
            self._fail(study, trial, error)
            raise
        trial.set_user_attr("cost", cost.as_dict())
        over = _over_budget(cost, self.limits)
        if over:
            trial.set_user_attr("infeasible", over)
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d: %s over budget (%s): not trained", trial.number, candidate.label,
                     ", ".join(f"{name} {v['cost']:.4g} > {v['limit']:.4g}" for name, v in over.items()))
            return
        values = [cost.value(name) for name in settings.objectives[1:]]
        earlier = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                        if t.params == trial.params), None)
        if earlier is not None:  # the same candidate was trained already: same seed, same result
            for key in ("metric", "run_dir", "teacher_metric"):
                if key in earlier.user_attrs:
                    trial.set_user_attr(key, earlier.user_attrs[key])
            trial.set_user_attr("repeat_of", earlier.number)
            study.tell(trial, [earlier.user_attrs["metric"], *values])
            log.info("Trial %d: %s was trained in trial %d", trial.number, candidate.label, earlier.number)
            return
        run_dir = self.search_dir / "trials" / f"{trial.number:03d}"
        log.info("Trial %d: %s (%s), %d epoch(s) of distillation in %s", trial.number, candidate.label,
                 _cost_text(cost), settings.epochs, run_dir)
        try:
            results = self.train(self.config(candidate, self.trial_epochs()), run_dir)
            metric = shipped_metric(results)
        except Exception as error:
            self._fail(study, trial, error)
            raise
        trial.set_user_attr("metric", metric)
        trial.set_user_attr("run_dir", os.path.relpath(run_dir, self.search_dir))
        teacher = (results.get("teacher") or {}).get("metrics", {}).get(self.primary)
        if isinstance(teacher, (int, float)):
            trial.set_user_attr("teacher_metric", float(teacher))
        study.tell(trial, [metric, *values])
        log.info("Trial %d: %s %.4f", trial.number, self.primary, metric)

    @staticmethod
    def _fail(study: optuna.Study, trial: optuna.trial.Trial, error: Exception) -> None:
        trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
        study.tell(trial, state=TrialState.FAIL)

    def retrain(self, chosen: FrozenTrial) -> tuple[Path, dict[str, Any]]:
        """The chosen student trained with the recipe's schedule: its trial's own run when trials ran it already."""
        candidate = from_params(chosen.params, self.settings.space)
        if self.settings.full_schedule and "run_dir" in chosen.user_attrs:
            trial_dir = self.search_dir / chosen.user_attrs["run_dir"]
            log.info("Trials ran the recipe's schedule: the chosen %s is trial %d's student in %s (not retrained)",
                     candidate.label, chosen.number, trial_dir)
            return trial_dir, json.loads((trial_dir / "results.json").read_text(encoding="utf-8"))
        best_dir = self.search_dir / "best"
        log.info("Retraining the chosen %s with the recipe's schedule in %s", candidate.label, best_dir)
        return best_dir, self.train(self.config(candidate, None), best_dir)


def _cost_text(cost: Cost) -> str:
    latency = f", {cost.latency_ms:.3f} ms {cost.runtime}" if cost.latency_ms is not None else ""
    return f"{cost.mult_adds / 1e6:.2f} M mult-adds, {cost.params / 1e6:.3f} M params{latency}"


def run_search(cfg: DictConfig, search_dir: str | os.PathLike | None = None,
               train: Trainer = _engine_run) -> dict[str, Any]:
    """Search the student for ``cfg.budget`` (conf/search.yaml); returns search.json's content.

    The folder is ``search.dir``, else ``search_dir``, else Hydra's output folder. ``train`` runs one candidate
    (the engine's ``run`` by default). A malformed request or an impossible budget raises ValueError before any
    training.
    """
    quiet_third_party()
    settings = parse_settings(cfg)
    # the cheapest candidate with every compress method the space may ask for: their packages are checked up front
    smallest_cfg = trial_config(cfg, smallest(settings.space)[-1], epochs=settings.epochs,
                                pinned_teacher_resolution=teacher_resolution(cfg))
    task, datamodule = build_data_and_task(smallest_cfg)
    check_compression(smallest_cfg, task)  # pruning / int8 asked for: the packages and the task allow it
    student_cfg = _check_student(cfg, task)
    factory = _factory(cfg, task, datamodule, student_cfg)
    threads = settings.threads or torch.get_num_threads()
    limits = _limits(settings, factory, threads)
    cheapest_candidate, cheapest = _check_budget(settings, factory, limits, threads)
    folder = run_folder(settings.dir or search_dir)
    url = storage_url(settings, folder)
    study = open_study(settings, url)
    # a measured budget (budget.latency_of) is measured once per study: a resumed search keeps the first figure
    stored = study.user_attrs.get(LIMITS_ATTR)
    if stored is None:
        study.set_user_attr(LIMITS_ATTR, limits)
    elif stored != limits:
        log.info("Budget: the study's limits as first measured, %s (measured now: %s)", stored, limits)
        limits = {name: float(value) for name, value in stored.items()}
    log.info("Search %r in %s (storage %s): budget %s, objectives %s; the smallest student: %s", settings.study_name,
             folder, public_url(url), limits, list(settings.objectives), _cost_text(cheapest))
    search = _Search(cfg, settings, folder, factory, limits, threads, train)
    search.trials(study)
    extra = {"limits": limits, "threads": threads, "smallest": {**cheapest_candidate.as_dict(), **cheapest.as_dict()}}
    summary = write_records(folder, settings, study, public_url(url), extra)
    plot_front(summary, folder / "front.png", task.primary_metric)
    chosen = chosen_trial(front_trials(study))
    if chosen is None:
        log.warning("No trial was trained within the budget: nothing to retrain")
        return summary
    if not settings.retrain or settings.worker != 0:
        return summary
    best_dir, results = search.retrain(chosen)
    primary = task.primary_metric
    retrained = {"run_dir": os.path.relpath(best_dir, folder), "trial": chosen.number,
                 "metric": shipped_metric(results) if results else None, "primary_metric": primary,
                 "trained_again": not settings.full_schedule}
    summary = write_records(folder, settings, study, public_url(url), {**extra, "retrained": retrained})
    if results:
        results = {**results, "search": summary}
        atomic_write_json(best_dir / "results.json", results)
    log.info("The chosen student (trial %d)%s: %s %s in %s", chosen.number,
             "" if settings.full_schedule else " retrained", primary, retrained["metric"], best_dir)
    return summary
