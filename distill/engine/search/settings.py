"""The search's request (``budget`` and ``search`` of conf/search.yaml) as checked plain data: anything malformed is
refused here, naming the key and what was expected, before any data is loaded or any student is trained."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["RUNTIMES", "COSTS", "Budget", "Space", "SearchSettings", "parse_settings"]

RUNTIMES = ("torch", "ort_fp32", "ort_int8")
COSTS = ("latency", "mult_adds", "params")  # what a budget limits and a second objective minimises


def _number(value: Any, key: str, *, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if integer and float(value) != int(value):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return int(value) if integer else float(value)


def _positive(value: Any, key: str, *, integer: bool = False) -> float | int | None:
    if value is None:
        return None
    number = _number(value, key, integer=integer)
    if not number > 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")
    return number


def _pair(value: Any, key: str, *, integer: bool = False) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{key} must be [low, high], got {value!r}")
    low, high = (_number(v, key, integer=integer) for v in value)
    if low > high:
        raise ValueError(f"{key} must be [low, high] with low <= high, got {value!r}")
    return low, high


@dataclass(frozen=True)
class Budget:
    latency_ms: float | None
    mult_adds: int | None
    params: int | None
    latency_of: tuple[float, int] | None  # a student whose measured latency becomes latency_ms
    runtime: str

    @property
    def limits(self) -> dict[str, float]:
        """The set limits by cost name (``latency`` in ms)."""
        named = {"latency": self.latency_ms, "mult_adds": self.mult_adds, "params": self.params}
        return {name: value for name, value in named.items() if value is not None}

    def as_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "mult_adds": self.mult_adds, "params": self.params,
                "latency_of": list(self.latency_of) if self.latency_of else None, "runtime": self.runtime}


@dataclass(frozen=True)
class Space:
    width: tuple[float, float]
    width_step: float
    resolution: tuple[int, int]
    resolution_step: int
    prune_ratio: tuple[float, float] | None
    prune_step: float
    int8: tuple[bool, ...] = (False,)  # the precisions a candidate may ship in: (False,), (True,) or both (searched)

    def as_dict(self) -> dict[str, Any]:
        return {"width": list(self.width), "width_step": self.width_step, "resolution": list(self.resolution),
                "resolution_step": self.resolution_step,
                "prune_ratio": list(self.prune_ratio) if self.prune_ratio else None, "prune_step": self.prune_step,
                "int8": list(self.int8)}


@dataclass(frozen=True)
class SearchSettings:
    budget: Budget
    space: Space
    objectives: tuple[str, ...]
    trials: int
    epochs: int
    full_schedule: bool
    seed: int
    startup_trials: int
    population_size: int
    max_infeasible: int
    threads: int | None
    latency_runs: int
    dir: str | None
    storage: str | None
    study_name: str
    heartbeat_s: int
    retrain: bool
    worker: int

    @property
    def needs_latency(self) -> bool:
        """Latency is measured for every trial only when a budget or an objective asks for it."""
        return "latency" in self.budget.limits or self.budget.latency_of is not None or "latency" in self.objectives

    def runtime_of(self, int8: bool) -> str:
        """Where a candidate's latency is measured: ONNX Runtime int8 for an int8 student, else the budget's runtime
        (ONNX Runtime float32 for a float student of an int8 budget whose precision is searched)."""
        if int8:
            return "ort_int8"
        return "ort_fp32" if self.budget.runtime == "ort_int8" else self.budget.runtime

    @property
    def directions(self) -> list[str]:
        return ["maximize" if name == "metric" else "minimize" for name in self.objectives]

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed study must share with the one in the storage (else its trials would mean something else)."""
        return {"budget": self.budget.as_dict(), "space": self.space.as_dict(), "objectives": list(self.objectives),
                "epochs": self.epochs, "seed": self.seed}


def _round_to(value: float, step: float) -> float:
    return round(round(value / step) * step, 10)


def _budget(raw: dict[str, Any]) -> Budget:
    unknown = sorted(set(raw) - {"latency_ms", "mult_adds", "params", "latency_of", "runtime"})
    if unknown:
        raise ValueError(f"unknown budget key(s) {unknown}; expected latency_ms, mult_adds, params, latency_of, "
                         f"runtime")
    runtime = raw.get("runtime") or "ort_fp32"
    if runtime not in RUNTIMES:
        raise ValueError(f"budget.runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    latency_of = _pair(raw.get("latency_of"), "budget.latency_of")
    if latency_of is not None:
        if raw.get("latency_ms") is not None:
            raise ValueError("give budget.latency_ms or budget.latency_of, not both")
        width, resolution = latency_of
        if not width > 0 or resolution != int(resolution) or resolution < 8:
            raise ValueError(f"budget.latency_of must be [width > 0, resolution in pixels], got {list(latency_of)}")
        latency_of = (float(width), int(resolution))
    return Budget(latency_ms=_positive(raw.get("latency_ms"), "budget.latency_ms"),
                  mult_adds=_positive(raw.get("mult_adds"), "budget.mult_adds", integer=True),
                  params=_positive(raw.get("params"), "budget.params", integer=True),
                  latency_of=latency_of, runtime=str(runtime))


def _precisions(value: Any, runtime: str) -> tuple[bool, ...]:
    """search.space.int8: false keeps every candidate in the budget's precision (int8 for budget.runtime=ort_int8,
    else float32); true searches it, each trial drawing float32 or int8."""
    if not isinstance(value, bool):
        raise ValueError(f"search.space.int8 must be true (search float32 and int8 students) or false, got {value!r}")
    if not value:
        return (runtime == "ort_int8",)
    if runtime == "torch":
        raise ValueError("search.space.int8=true measures int8 students in ONNX Runtime, so the budget must be an "
                         "ONNX Runtime latency to compare with: set budget.runtime=ort_fp32 (or ort_int8), not torch")
    return (False, True)


def _space(raw: dict[str, Any], recipe_resolution: int, runtime: str) -> Space:
    width_step = _positive(raw.get("width_step", 0.0625), "search.space.width_step")
    low, high = _pair(raw.get("width", [0.25, 1.0]), "search.space.width")
    if not low > 0:
        raise ValueError(f"search.space.width must be > 0, got {[low, high]}")
    width = (_round_to(low, width_step), _round_to(high, width_step))
    if width[0] <= 0 or width[0] > width[1]:
        raise ValueError(f"search.space.width {[low, high]} holds no multiple of width_step={width_step}")
    resolution_step = int(_positive(raw.get("resolution_step", 8), "search.space.resolution_step", integer=True))
    resolution = _pair(raw.get("resolution"), "search.space.resolution", integer=True)
    if resolution is None:  # half the recipe's resolution to the recipe's own
        resolution = (recipe_resolution // 2, recipe_resolution)
    res_low = -(-resolution[0] // resolution_step) * resolution_step  # round up to a multiple of the step
    res_high = resolution[1] // resolution_step * resolution_step
    if res_low < resolution_step or res_low > res_high:
        raise ValueError(f"search.space.resolution {list(resolution)} holds no multiple of "
                         f"resolution_step={resolution_step} (>= {resolution_step})")
    prune_step = _positive(raw.get("prune_step", 0.05), "search.space.prune_step")
    prune = _pair(raw.get("prune_ratio"), "search.space.prune_ratio")
    if prune is not None and not (0 <= prune[0] and prune[1] < 1):
        raise ValueError(f"search.space.prune_ratio must be [low, high] within [0, 1), got {list(prune)}")
    return Space(width, float(width_step), (int(res_low), int(res_high)), resolution_step,
                 (float(prune[0]), float(prune[1])) if prune else None, float(prune_step),
                 _precisions(raw.get("int8", False), runtime))


def parse_settings(cfg: DictConfig) -> SearchSettings:
    """The checked ``budget`` and ``search`` of ``cfg`` (ValueError naming the key otherwise)."""
    if cfg.get("search") is None or cfg.get("budget") is None:
        raise ValueError("the config has no 'search' or 'budget' section: run python -m distill.search "
                         "(conf/search.yaml)")
    raw = OmegaConf.to_container(cfg.search, resolve=True)
    budget = _budget(OmegaConf.to_container(cfg.budget, resolve=True))
    space = _space(raw.get("space") or {}, int(cfg.data.resolution), budget.runtime)
    objectives = tuple(raw.get("objectives") or ["metric"])
    if objectives[0] != "metric" or len(objectives) > 2 or (len(objectives) == 2 and objectives[1] not in COSTS):
        raise ValueError(f"search.objectives must be [metric] or [metric, one of {', '.join(COSTS)}], "
                         f"got {list(objectives)}")
    if len(objectives) == 1 and not budget.limits and budget.latency_of is None:
        raise ValueError("no budget: set budget.latency_ms, budget.mult_adds, budget.params or budget.latency_of "
                         "(or search a front: search.objectives=[metric,latency])")
    trials = int(_positive(raw.get("trials"), "search.trials", integer=True) or 0)
    if trials < 1:
        raise ValueError("search.trials must be >= 1")
    threads = raw.get("threads")
    schedule = int(cfg.trainer.max_epochs)
    epochs = raw.get("epochs", 2)
    full_schedule = epochs == "full"  # every trial is the recipe's whole run: no proxy, no retraining
    if full_schedule:
        epochs = schedule
    if isinstance(epochs, str):
        raise ValueError(f"search.epochs must be a whole number of epochs or 'full' (the recipe's "
                         f"trainer.max_epochs={schedule}), got {epochs!r}")
    epochs = int(_positive(epochs, "search.epochs", integer=True))
    return SearchSettings(
        budget=budget, space=space, objectives=objectives, trials=trials,
        epochs=epochs, full_schedule=full_schedule,
        seed=int(_number(raw.get("seed", 0), "search.seed", integer=True)),
        startup_trials=int(_number(raw.get("startup_trials", 4), "search.startup_trials", integer=True)),
        population_size=int(_positive(raw.get("population_size", 6), "search.population_size", integer=True)),
        max_infeasible=int(_positive(raw.get("max_infeasible", 50), "search.max_infeasible", integer=True)),
        threads=int(_positive(threads, "search.threads", integer=True)) if threads is not None else None,
        latency_runs=int(_positive(raw.get("latency_runs", 30), "search.latency_runs", integer=True)),
        dir=str(raw["dir"]) if raw.get("dir") else None,
        storage=str(raw["storage"]) if raw.get("storage") else None,
        study_name=str(raw.get("study_name") or f"{cfg.get('recipe_name', 'custom')}-search"),
        heartbeat_s=int(_positive(raw.get("heartbeat_s", 60), "search.heartbeat_s", integer=True)),
        retrain=bool(raw.get("retrain", True)),
        worker=int(_number(raw.get("worker", 0), "search.worker", integer=True)),
    )
