"""`python -m distill.cache list|prune`: what distill keeps in its cache folder, and trimming it.

The cache folder is ``--dir``, else ``$DISTILL_CACHE_DIR``, else ``~/.cache/distill`` (``cache.dir=`` of a run).
It holds three kinds of entries:

- ``teachers``: fitted teachers, ``teachers/<key>.pt`` with the key's parts (``<key>.parts.json``) and the
  teacher's test metrics (``<key>.metrics-<metrics key>.json``) beside it: one network's weights, MBs to a few
  hundred MBs;
- ``teacher_outputs``: a teacher's outputs on every (sample, view), ``teacher_outputs/<key>-<dtype>/`` (samples x views x
  the output size x 4 bytes: a 512-d embedding over 100k images and 2 views is 400 MB);
- ``data``: generated and decoded image arrays, every other folder (``faces/*.npz``, ``synthetic_coco/<key>/``;
  N x image_size^2 x 3 bytes).

A run's unfinished leftovers (a build's temporary folder or file, prediction shards) are listed as ``unfinished``.

``prune`` removes whole entries: those not used for ``--older-than`` days, then the least recently used until the
folder holds at most ``--max-size``. An entry whose lock is held (a run is fitting that teacher or building those
outputs) is never removed, and neither is an unfinished entry touched within the last hour. An entry is first
renamed out of the way under its lock, then deleted, so no run finds half of one. ``--dry-run`` only says what
would go.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.core.paths import default_cache_dir
from distill.engine.cache.lock import try_file_lock

__all__ = ["CacheEntry", "scan_cache", "select_prunable", "prune", "parse_size", "format_size", "main"]

TEACHERS, OUTPUTS, DATA = "teachers", "teacher_outputs", "data"
UNFINISHED_GRACE_S = 3600.0  # an unfinished entry touched more recently may belong to a running job
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_TEMPORARY = re.compile(r"^\.(?P<key>.+?)(?:\.tmp-.*|\.[A-Za-z0-9_]+\.tmp)$")  # store temporaries, atomic_write's


@dataclass
class CacheEntry:
    kind: str            # teachers | teacher_outputs | data
    key: str             # the entry's name within its kind
    paths: tuple[Path, ...]  # the files or folders that make the entry (a teacher's weights and its parts)
    size: int            # bytes
    last_used: float     # seconds since the epoch: the latest access or change of any of its files
    lock: Path | None    # the lock a run holds while building or fitting it
    unfinished: bool = False

    @property
    def path(self) -> Path:
        return self.paths[0]

    def as_row(self, now: float) -> dict[str, str]:
        days = max(0.0, (now - self.last_used) / 86400)
        return {"kind": self.kind + (" (unfinished)" if self.unfinished else ""), "key": self.key,
                "size": format_size(self.size),
                "last used": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used)) + f" ({days:.0f} d ago)"}


def parse_size(text: str) -> int:
    """'500M', '1.5G', '2GiB', '10GB', '123' (bytes) -> bytes; units are powers of 1024."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
    if not match:
        raise ValueError(f"size {text!r}: expected a number with an optional unit K, M, G or T (e.g. 500M, 10G)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_size(size: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir() and not path.is_symlink():
        yield path
        for folder, _, names in os.walk(path):
            for name in names:
                yield Path(folder) / name
    else:
        yield path


def _measure(path: Path) -> tuple[int, float]:
    size, last = 0, 0.0
    for file in _files(path):
        try:
            stat = file.lstat()
        except FileNotFoundError:
            continue
        if file.is_dir():  # listing a folder (this scan too) touches its access time: only changes count
            last = max(last, stat.st_mtime)
        else:
            size += stat.st_size
            last = max(last, stat.st_atime, stat.st_mtime)
    return size, last


def _entry(kind: str, key: str, paths: Path | list[Path], lock: Path | None, unfinished: bool = False) -> CacheEntry:
    paths = tuple(paths) if isinstance(paths, list) else (paths,)
    measured = [_measure(path) for path in paths]
    return CacheEntry(kind, key, paths, sum(size for size, _ in measured), max(last for _, last in measured), lock,
                      unfinished)


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def scan_cache(root: str | os.PathLike) -> list[CacheEntry]:
    """Every entry of the cache folder ``root`` (see the module docstring), by kind, then key."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries: list[CacheEntry] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind = folder.name if folder.name in (TEACHERS, OUTPUTS) else DATA
        teachers: dict[str, list[Path]] = {}
        for item in sorted(folder.iterdir()):
            name = item.name
            if name.endswith(".lock") or ".pruned-" in name:
                continue
            if name == ".shards" and kind == OUTPUTS:  # per-rank predictions of a build in progress (or killed)
                entries += [_entry(kind, shard.name, shard, folder / f".{shard.name}.lock", True)
                            for shard in sorted(item.iterdir())]
                continue
            if name.startswith("."):
                temporary = _TEMPORARY.match(name)
                if temporary:
                    key = temporary.group("key")
                    key = key.split(".", 1)[0] if kind == TEACHERS else key
                    label = key if kind != DATA else f"{folder.name}/{key}"
                    entries.append(_entry(kind, label, item, folder / f".{key}.lock" if kind != DATA else None, True))
                continue
            if kind == TEACHERS:  # <key>.pt and <key>.parts.json: one entry
                teachers.setdefault(name.split(".", 1)[0], []).append(item)
            elif kind == OUTPUTS:
                entries.append(_entry(kind, name, item, folder / f".{name}.lock"))
            else:
                lock = folder / f".{_stem(name)}.lock"
                entries.append(_entry(kind, f"{folder.name}/{_stem(name)}", item, lock if lock.exists() else None))
        entries += [_entry(kind, key, sorted(paths, key=lambda p: not p.name.endswith(".pt")),
                           folder / f".{key}.lock") for key, paths in sorted(teachers.items())]
    return entries


def _is_locked(entry: CacheEntry) -> bool:
    if entry.lock is None or not entry.lock.exists():
        return False
    with try_file_lock(entry.lock) as acquired:
        return not acquired


def select_prunable(entries: list[CacheEntry], *, older_than_days: float | None = None, max_size: int | None = None,
                    now: float | None = None) -> list[CacheEntry]:
    """What prune removes, least recently used first: entries unused for ``older_than_days``, then the least
    recently used until the rest fits in ``max_size`` bytes. Unfinished entries touched within the last hour stay."""
    now = time.time() if now is None else now
    eligible = [e for e in entries if not (e.unfinished and now - e.last_used < UNFINISHED_GRACE_S)]
    chosen: list[CacheEntry] = []
    if older_than_days is not None:
        chosen = [e for e in eligible if now - e.last_used > older_than_days * 86400]
    if max_size is not None:
        kept = sum(e.size for e in entries) - sum(e.size for e in chosen)
        for entry in sorted((e for e in eligible if e not in chosen), key=lambda e: e.last_used):
            if kept <= max_size:
                break
            chosen.append(entry)
            kept -= entry.size
    return sorted(chosen, key=lambda e: e.last_used)


def _remove_entry(entry: CacheEntry) -> bool:
    """Rename the entry out of the way under its lock, then delete it; False if a run holds its lock."""
    guard = try_file_lock(entry.lock) if entry.lock is not None else contextlib.nullcontext(True)
    with guard as acquired:
        if not acquired:
            return False
        moved = []
        for path in entry.paths:
            aside = path.with_name(f".{path.name}.pruned-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue  # gone already
            moved.append(aside)
    for aside in moved:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
    return True


def prune(entries: list[CacheEntry], *, older_than_days: float | None = None, max_size: int | None = None,
          dry_run: bool = False, now: float | None = None) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Remove what ``select_prunable`` chooses; returns (removed, kept because a run holds their lock)."""
    removed, busy = [], []
    for entry in select_prunable(entries, older_than_days=older_than_days, max_size=max_size, now=now):
        if dry_run:
            (busy if _is_locked(entry) else removed).append(entry)
        elif _remove_entry(entry):
            removed.append(entry)
        else:
            busy.append(entry)
    return removed, busy


def _table(entries: list[CacheEntry], now: float) -> str:
    rows = [entry.as_row(now) for entry in entries]
    header = ["kind", "key", "size", "last used"]
    widths = {h: max([len(h)] + [len(r[h]) for r in rows]) for h in header}
    lines = ["  ".join(h.ljust(widths[h]) for h in header)]
    lines += ["  ".join(r[h].rjust(widths[h]) if h == "size" else r[h].ljust(widths[h]) for h in header) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.cache", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--dir", type=Path, default=None,
                        help="the cache folder (default: $DISTILL_CACHE_DIR, else ~/.cache/distill)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one line per entry: kind, key, size, last used")
    pruning = commands.add_parser("prune", help="remove old or least recently used entries")
    pruning.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                         help="remove entries not used for this many days")
    pruning.add_argument("--max-size", type=str, default=None, metavar="SIZE",
                         help="then remove the least recently used until the cache holds at most SIZE (e.g. 20G)")
    pruning.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    for sub in commands.choices.values():
        sub.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help="the cache folder")
    args = parser.parse_args(argv)
    root = default_cache_dir(args.dir)
    now = time.time()
    entries = scan_cache(root)
    if args.command == "list":
        if not entries:
            print(f"{root}: empty (no cached teachers, teacher outputs or data)")
            return 0
        print(_table(entries, now))
        print(f"\n{len(entries)} entries, {format_size(sum(e.size for e in entries))} in {root}")
        return 0
    if args.older_than is None and args.max_size is None:
        parser.error("prune needs --older-than DAYS and/or --max-size SIZE")
    try:
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError as error:
        parser.error(str(error))
    removed, busy = prune(entries, older_than_days=args.older_than, max_size=max_size, dry_run=args.dry_run, now=now)
    verb = "would remove" if args.dry_run else "removed"
    if removed:
        print(f"{verb}:\n" + _table(removed, now))
    for entry in busy:
        print(f"kept {entry.kind} {entry.key}: a run holds its lock {entry.lock}", file=sys.stderr)
    left = sum(e.size for e in entries) - sum(e.size for e in removed)
    print(f"\n{verb} {len(removed)} entries ({format_size(sum(e.size for e in removed))}); "
          f"{format_size(left)} left in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
