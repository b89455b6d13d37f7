"""`python -m distill recipe=<name> [overrides]`: the Hydra entry point; the work is in distill.engine.run."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from distill.engine.run import run


@hydra.main(version_base="1.3", config_path="pkg://distill.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    results = run(cfg)
    # Returning the primary metric lets sweepers (e.g. Optuna) optimise it.
    if not results:
        return None
    return results["student"]["metrics"].get(results["primary_metric"])


if __name__ == "__main__":
    main()
