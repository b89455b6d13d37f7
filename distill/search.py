"""``python -m distill.search recipe=<name> budget.latency_ms=<ms> [key=value ...]``: the best student for a budget.

    python -m distill.search recipe=facenet budget.latency_of='[0.75,80]' budget.runtime=ort_fp32
    python -m distill.search recipe=smoke budget.mult_adds=2000000 search.trials=6
    python -m distill.search recipe=facenet 'search.objectives=[metric,latency]' search.trials=12
    python -m distill.search recipe=facenet budget.latency_ms=3 search.dir=outputs/search-facenet   # resume

Every key is in conf/search.yaml (``budget``, ``search``) beside the recipe's own. Writes search.json, front.json,
front.png, study.db (the Optuna storage), trials/<number>/ (a run folder per trained trial) and best/ (the chosen
student retrained with the recipe's schedule; its results.json holds the search). The work is in
``distill.engine.search``.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from distill.engine.search import run_search

__all__ = ["main"]

log = logging.getLogger("distill.search")


@hydra.main(version_base="1.3", config_path="pkg://distill.conf", config_name="search")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = run_search(cfg)
    except ValueError as error:  # a malformed request or an impossible budget: said plainly, before any training
        log.error("%s", error)
        sys.exit(2)
    chosen = summary.get("chosen")
    # Returning the chosen trial's metric lets an outer sweeper compare searches.
    return chosen.get("metric") if chosen else None


if __name__ == "__main__":
    main()
