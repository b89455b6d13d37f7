"""python -m distill.cache list|prune on a fabricated cache folder: kinds, sizes, last use, locks, atomic removal."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from distill.cache import main, parse_size, scan_cache, select_prunable
from distill.engine.cache.lock import file_lock

DAY = 86400.0


def _age(path: Path, days: float, now: float) -> None:
    stamp = now - days * DAY
    for folder, _, names in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        for name in names:
            os.utime(Path(folder) / name, (stamp, stamp))
    os.utime(path, (stamp, stamp))


def _file(path: Path, size: int, days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    _age(path, days, now)
    return path


def _folder(path: Path, files: dict[str, int], days: float, now: float) -> Path:
    for name, size in files.items():
        _file(path / name, size, days, now)
    _age(path, days, now)
    return path


@pytest.fixture
def cache(tmp_path):
    """teachers: old (10 d) and recent (1 d); teacher outputs: old (20 d), an unfinished build (2 d) and fresh
    shards of a running job; data: synthetic faces (30 d) and COCO scenes (3 d)."""
    now = time.time()
    root = tmp_path / "cache"
    _file(root / "teachers" / "aaa.pt", 900, 10, now)
    _file(root / "teachers" / "aaa.parts.json", 100, 10, now)  # the key's parts, beside the weights
    _file(root / "teachers" / ".aaa.lock", 0, 10, now)
    _file(root / "teachers" / "bbb.pt", 2000, 1, now)
    _folder(root / "teacher_outputs" / "ccc-float32", {"manifest.json": 100, "output.npy": 4900}, 20, now)
    _folder(root / "teacher_outputs" / ".ddd-float16.tmp-12-abcdef01", {"output.npy": 700}, 2, now)
    _folder(root / "teacher_outputs" / ".shards" / "eee-float32", {"4242-0a1b2c3d/rank0-index.npy": 300}, 0, now)
    _file(root / "faces" / "synthetic-fff.npz", 3000, 30, now)
    _folder(root / "synthetic_coco" / "ggg", {"train.json": 10, "images/0.png": 90}, 3, now)
    return root, now


def _by_key(entries):
    return {entry.key: entry for entry in entries}


def test_scan_finds_every_kind_with_its_size_and_last_use(cache):
    root, now = cache
    entries = _by_key(scan_cache(root))
    assert {key: (e.kind, e.size, e.unfinished) for key, e in entries.items()} == {
        "aaa": ("teachers", 1000, False), "bbb": ("teachers", 2000, False),
        "ccc-float32": ("teacher_outputs", 5000, False), "ddd-float16": ("teacher_outputs", 700, True),
        "eee-float32": ("teacher_outputs", 300, True),
        "faces/synthetic-fff": ("data", 3000, False), "synthetic_coco/ggg": ("data", 100, False)}
    assert entries["aaa"].last_used == pytest.approx(now - 10 * DAY, abs=2)
    assert entries["aaa"].paths == (root / "teachers" / "aaa.pt", root / "teachers" / "aaa.parts.json")
    assert entries["aaa"].lock == root / "teachers" / ".aaa.lock"
    assert entries["ccc-float32"].lock == root / "teacher_outputs" / ".ccc-float32.lock"
    assert entries["ddd-float16"].lock == root / "teacher_outputs" / ".ddd-float16.lock"
    assert entries["eee-float32"].lock == root / "teacher_outputs" / ".eee-float32.lock"


def test_list_prints_a_table_and_honours_the_environment(cache, monkeypatch, capsys):
    root, _ = cache
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(root))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["kind", "key", "size", "last", "used"]
    assert any(line.split()[:2] == ["teacher_outputs", "ccc-float32"] and "4.9 K" in line for line in out.splitlines())
    assert "teacher_outputs (unfinished)" in out and "faces/synthetic-fff" in out and "(10 d ago)" in out
    assert f"7 entries, 11.8 K in {root}" in out
    assert main(["list", "--dir", str(root / "nowhere")]) == 0
    assert "empty" in capsys.readouterr().out


def test_prune_older_than_removes_whole_old_entries_but_never_a_locked_one(cache, capsys):
    root, _ = cache
    with file_lock(root / "teacher_outputs" / ".ccc-float32.lock"):  # a run is building these outputs
        assert main(["--dir", str(root), "prune", "--older-than", "5"]) == 0
    captured = capsys.readouterr()
    assert "kept teacher_outputs ccc-float32: a run holds its lock" in captured.err
    left = _by_key(scan_cache(root))
    assert set(left) == {"bbb", "ccc-float32", "ddd-float16", "eee-float32", "synthetic_coco/ggg"}
    assert not (root / "teachers" / "aaa.pt").exists() and not (root / "teachers" / "aaa.parts.json").exists()
    assert not (root / "faces" / "synthetic-fff.npz").exists()
    assert not [p for p in root.rglob("*") if ".pruned-" in p.name]  # renamed aside, then deleted: nothing left
    assert "removed 2 entries (3.9 K)" in captured.out


def test_prune_max_size_evicts_the_least_recently_used_and_spares_a_running_job(cache, capsys):
    root, now = cache
    entries = scan_cache(root)
    chosen = select_prunable(entries, max_size=2500, now=now)
    # 12100 bytes: oldest first (faces 30 d, outputs 20 d, teacher 10 d, COCO 3 d) until <= 2500; the fresh
    # shards of a running job are never chosen, the 2-day-old unfinished build may be
    assert [e.key for e in chosen] == ["faces/synthetic-fff", "ccc-float32", "aaa", "synthetic_coco/ggg", "ddd-float16"]
    assert main(["--dir", str(root), "prune", "--max-size", "2500B", "--dry-run"]) == 0
    assert "would remove 5 entries" in capsys.readouterr().out
    assert len(scan_cache(root)) == 7  # a dry run removes nothing
    assert main(["--dir", str(root), "prune", "--max-size", "2500"]) == 0
    assert set(_by_key(scan_cache(root))) == {"bbb", "eee-float32"}


def test_prune_needs_a_rule_and_sizes_parse():
    with pytest.raises(SystemExit):
        main(["prune"])
    assert parse_size("500") == 500
    assert parse_size("4K") == 4096 and parse_size("1.5G") == int(1.5 * 1024 ** 3) and parse_size("2GiB") == 2 << 30
    assert parse_size("10gb") == 10 << 30
    with pytest.raises(ValueError, match="expected a number"):
        parse_size("lots")
