"""The keys of the engine's caches as named parts, kept beside each cached item, and why a key was not found.

A fitted teacher (``<cache>/teachers/<key>.pt``) and a teacher-output cache (``<cache>/teacher_outputs/<key>-<dtype>/``)
are named by ``fingerprint(**parts)`` of everything that shapes them (``teacher_key_parts``,
``teacher_output_key_parts``). The parts are also stored, as plain JSON, beside what they name: a fitted teacher's in
``<key>.parts.json`` next to its ``.pt``, teacher outputs' as ``parts`` in the cache's manifest. When a key is not
found, ``explain_miss`` compares its parts with those of the newest existing entry of the same kind and logs (INFO)
which parts changed, e.g. ``teacher cache miss: data.files.train changed (data files edited, added or removed)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from distill.core.fingerprint import fingerprint_parts_diff, memory_format, module_fingerprint, plain_parts
from distill.core.io import atomic_write
from distill.engine.cache.manifest import MANIFEST_NAME

__all__ = ["data_key_parts", "explain_miss", "memory_format", "newest_manifest_parts", "newest_sidecar_parts",
           "parts_path", "teacher_data_key_parts", "teacher_key_parts", "teacher_output_key_parts", "write_parts"]

log = logging.getLogger(__name__)

PARTS_SUFFIX = ".parts.json"
_SHOWN = 6  # changed parts named in one log line

# What a changed part most likely means, by the longest matching prefix of its dotted name.
_HINTS = {
    "data.files": "data files edited, added or removed",
    "data.augmentation": "augmentation settings changed",
    "data.generator": "the synthetic data generator's source changed",
    "data.verify": "cache.verify changed",
    "data": "data settings changed",
    "teacher": "the teacher changed",
    "fit": "teacher.fit settings changed",
    "channels_last": "channels_last (the memory format) changed",
    "dtype": "cache.dtype changed",
    "seed": "the seed changed",
    "layers": "the loss terms read other teacher layers",
    "resolution": "the teacher's resolution changed",
    "teacher_resolution": "the teacher's resolution changed",
    "num_views": "data.num_views changed",
}


def data_key_parts(datamodule: Any) -> dict[str, Any]:
    """The plain parts of a data module's fingerprint (``key_parts()``; a module without it: its ``fingerprint()``)."""
    key_parts = getattr(datamodule, "key_parts", None)
    if callable(key_parts):
        return dict(key_parts())
    return {"fingerprint": datamodule.fingerprint()}


def teacher_data_key_parts(datamodule: Any) -> dict[str, Any]:
    """The data parts of a fitted teacher's key: the module's ``teacher_key_parts()`` (what shapes the split the
    teacher is fitted on) where it has one, else all of its data parts."""
    narrowed = getattr(datamodule, "teacher_key_parts", None)
    if callable(narrowed):
        return dict(narrowed())
    return data_key_parts(datamodule)


def teacher_key_parts(base: Mapping[str, Any], datamodule: Any, fit_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A fitted teacher's key parts: ``base`` (its builder, resolution, seed, memory format), the data its split
    depends on and the fit settings, as plain data."""
    return plain_parts(**base, data=teacher_data_key_parts(datamodule), fit=dict(fit_cfg))


def teacher_output_key_parts(module: Any, datamodule: Any, *, dtype: str = "float32",
                             channels_last: bool | None = None) -> dict[str, Any]:
    """Teacher outputs' key parts: data (files, settings, augmentation), teacher weights, the layers read, the
    teacher's resolution, views and seed, the memory format the teacher runs in and the stored dtype.

    ``channels_last`` None: read from the teacher's weights (``memory_format``).
    """
    layout = memory_format(module.teacher) if channels_last is None else (
        "channels_last" if channels_last else "contiguous")
    return plain_parts(data=data_key_parts(datamodule), teacher=module_fingerprint(module.teacher),
                       layers=module.teacher_layers, teacher_resolution=module.teacher_resolution,
                       num_views=datamodule.num_views, augment=bool(datamodule.augment), seed=datamodule.seed,
                       channels_last=layout == "channels_last", dtype=str(dtype))


def parts_path(directory: Path, key: str) -> Path:
    """Where the parts of the item named ``key`` in ``directory`` are kept: ``<key>.parts.json``."""
    return Path(directory) / f"{key}{PARTS_SUFFIX}"


def write_parts(path: Path, parts: Mapping[str, Any]) -> None:
    """Write ``parts`` as JSON to ``path`` atomically (what a later miss is compared with)."""
    text = json.dumps(parts, indent=1, sort_keys=True)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _newest(candidates: Iterable[tuple[Path, Path, Path]]) -> tuple[Path, dict] | None:
    """Of (entry, JSON file, file dating the entry's last use) triples, the most recently used entry's (entry,
    parsed JSON); None when no JSON file is readable. The caches touch what they read."""
    dated = []
    for name, file, dated_by in candidates:
        try:
            dated.append((dated_by.stat().st_mtime_ns, name, file))
        except OSError:
            continue
    for _, name, file in sorted(dated, key=lambda item: item[0], reverse=True):
        content = _read_json(file)
        if content is not None:
            return name, content
    return None


def newest_sidecar_parts(directory: Path, exclude: str) -> tuple[Path, dict] | None:
    """(``<key>.pt``, parts) of the most recently used fitted teacher in ``directory`` (other than key ``exclude``)
    that has a ``<key>.parts.json``."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    candidates = []
    for file in directory.glob(f"*{PARTS_SUFFIX}"):
        if file.name != f"{exclude}{PARTS_SUFFIX}":
            teacher = file.with_name(file.name.removesuffix(PARTS_SUFFIX) + ".pt")
            candidates.append((teacher, file, teacher if teacher.is_file() else file))
    return _newest(candidates)


def newest_manifest_parts(root: Path, exclude: Path) -> tuple[Path, dict] | None:
    """(cache directory, parts) of the newest teacher-output cache under ``root`` (other than ``exclude``) whose
    manifest records its parts."""
    root = Path(root)
    if not root.is_dir():
        return None
    candidates = [(folder, folder / MANIFEST_NAME, folder / MANIFEST_NAME) for folder in root.iterdir()
                  if folder.is_dir() and not folder.name.startswith(".") and folder != Path(exclude)]
    found = _newest(candidates)
    while found is not None and not isinstance(found[1].get("parts"), dict):  # a cache written before parts
        candidates = [candidate for candidate in candidates if candidate[0] != found[0]]
        found = _newest(candidates)
    return None if found is None else (found[0], found[1]["parts"])


def _hint(name: str) -> str | None:
    prefix = name
    while prefix:
        if prefix in _HINTS:
            return _HINTS[prefix]
        prefix = prefix.rpartition(".")[0]
    return None


def explain_miss(kind: str, parts: Mapping[str, Any], earlier: tuple[Path, dict] | None) -> list[str]:
    """Log (INFO) which parts of a key that was not found differ from the newest earlier entry's; return them.

    ``kind`` names the cache in the message ("teacher", "teacher-output"); ``earlier`` is (entry, parts) from
    ``newest_sidecar_parts`` / ``newest_manifest_parts``, or None when no earlier entry records its parts.
    """
    if earlier is None:
        log.info("%s cache miss: no earlier entry to compare with (a first run, or the cache folder is new)", kind)
        return []
    entry, before = earlier
    changed = fingerprint_parts_diff(before, plain_parts(**parts))
    if not changed:
        log.info("%s cache miss: the key's parts equal those of %s, which is incomplete or unreadable", kind, entry)
        return changed
    hints = list(dict.fromkeys(hint for hint in map(_hint, changed) if hint))
    shown = ", ".join(changed[:_SHOWN]) + (f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else "")
    log.info("%s cache miss: %s changed%s, compared with the newest earlier entry %s", kind, shown,
             f" ({'; '.join(hints)})" if hints else "", entry.name)
    return changed
