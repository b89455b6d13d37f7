"""The Optuna study of a search, kept in RDB storage (SQLite in the search folder by default, any SQLAlchemy URL by
option) so that a killed search resumes where it stopped and several workers can share it.

- Reproducible: the sampler is rebuilt before every trial with a seed made of ``search.seed``, the worker and the
  trial's number, so a search resumed after n trials draws what an uninterrupted one would have drawn next.
- Resumable: every running trial beats a heartbeat; a trial whose worker died (no beat for two intervals) is
  failed by the next worker that starts a trial, and its parameters are queued to run again.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryFailedTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from distill.engine.search.settings import SearchSettings

__all__ = ["storage_url", "open_study", "sampler_for", "Heartbeat", "fail_dead_trials", "public_url", "count",
           "SETTINGS_ATTR", "LIMITS_ATTR"]

SETTINGS_ATTR = "distill_search"  # the study's user attribute holding what its trials were made for
LIMITS_ATTR = "distill_limits"  # the budget's limits as first measured (a latency_of budget is a measurement)
_SEED_STRIDE = 1_000_003


def storage_url(settings: SearchSettings, search_dir: Path) -> str:
    return settings.storage or f"sqlite:///{(Path(search_dir) / 'study.db').resolve()}"


def public_url(url: str) -> str:
    """The storage URL without its password, for logs and records."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def sampler_for(settings: SearchSettings, number: int) -> optuna.samplers.BaseSampler:
    """TPE for one objective, NSGA-II for two; seeded by (search.seed, search.worker, trial number): workers that
    share a storage and ask at the same moment draw with different seeds."""
    seed = ((settings.seed * _SEED_STRIDE + settings.worker) * _SEED_STRIDE + number) % (2**32)
    if len(settings.objectives) > 1:
        return optuna.samplers.NSGAIISampler(population_size=settings.population_size, seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=settings.startup_trials, seed=seed)


def open_study(settings: SearchSettings, url: str) -> optuna.Study:
    """The study ``settings.study_name`` in ``url``, made or loaded; refused (ValueError) when the stored study was
    made for another budget, space or objectives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        storage = RDBStorage(url, heartbeat_interval=settings.heartbeat_s, grace_period=2 * settings.heartbeat_s,
                             failed_trial_callback=RetryFailedTrialCallback(max_retry=1))
    study = optuna.create_study(storage=storage, study_name=settings.study_name, directions=settings.directions,
                                sampler=sampler_for(settings, 0), load_if_exists=True)
    wanted = settings.fingerprint()
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
    elif stored != wanted or [d.name.lower() for d in study.directions] != settings.directions:
        changed = sorted(key for key in wanted if stored.get(key) != wanted[key])
        raise ValueError(f"study {settings.study_name!r} in {public_url(url)} was made for other settings "
                         f"({', '.join(changed) or 'objectives'} differ: stored {[stored.get(k) for k in changed]}); "
                         f"resume it with its own settings or give another search.study_name")
    return study


def fail_dead_trials(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped beating; their parameters are queued again (RetryFailedTrialCallback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)


def count(trials: list[FrozenTrial], state: TrialState) -> int:
    return sum(1 for trial in trials if trial.state == state)


class Heartbeat:
    """Records the running trial's heartbeat in the storage every interval, from a daemon thread."""

    def __init__(self, study: optuna.Study, trial: optuna.trial.Trial) -> None:
        self.storage: Any = study._storage  # Optuna keeps heartbeats on the storage; there is no public handle
        self.trial_id = trial._trial_id
        self.interval = self.storage.get_heartbeat_interval()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="distill-search-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
