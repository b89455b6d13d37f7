"""The best student for a budget: an Optuna study over the student's width, input resolution and pruning, every
candidate's cost measured before training (over budget: rejected untrained), the others distilled briefly from the
cached teacher, the chosen one retrained with the recipe's schedule. ``run_search(cfg)``; the command is
``python -m distill.search`` (conf/search.yaml)."""

from distill.engine.search.runner import BudgetError, Trainer, run_search
from distill.engine.search.settings import SearchSettings, parse_settings
from distill.engine.search.space import Candidate

__all__ = ["BudgetError", "Candidate", "SearchSettings", "Trainer", "parse_settings", "run_search"]
