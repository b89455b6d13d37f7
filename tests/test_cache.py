"""Tests of the teacher-output cache: round trip, corruption handling, atomic builds, builds from batches of
arbitrary (view, index) pairs, the inter-process file lock, fingerprints."""

import json
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from distill.core.fingerprint import fingerprint, module_fingerprint
from distill.engine.cache import FORMAT_VERSION, MANIFEST_NAME, TeacherOutputCache, file_lock
from distill.engine.cache import lock as lock_module

NUM_SAMPLES = 10
NUM_VIEWS = 2
BATCH = 4


def _images(view: int) -> torch.Tensor:
    """Deterministic 'augmented' inputs of one view: (NUM_SAMPLES, 5)."""
    generator = torch.Generator().manual_seed(1000 + view)
    return torch.randn(NUM_SAMPLES, 5, generator=generator)


class FakeTeacher:
    """A fixed random linear map with two outputs; counts how many views it was asked for."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(5, 3, generator=generator)
        self.feature_weight = torch.randn(5, 2, 2, generator=generator)
        self.calls = []
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> dict:
        return {
            "logits": x @ self.weight,
            "features": torch.einsum("bi,ijk->bjk", x, self.feature_weight),
        }

    def compute_view(self, view: int):
        """Batches in a shuffled sample order, as a shuffled data loader would give them."""
        with self._lock:
            self.calls.append(view)
        order = torch.randperm(NUM_SAMPLES, generator=torch.Generator().manual_seed(7 + view))
        images = _images(view)
        return [(idx, self(images[idx])) for idx in order.split(BATCH)]

    def expected(self, name: str) -> torch.Tensor:
        """Independently computed reference: (NUM_VIEWS, NUM_SAMPLES, ...)."""
        return torch.stack([self(_images(view))[name] for view in range(NUM_VIEWS)])


def _cache(root, key="teacher-abc", **kwargs) -> TeacherOutputCache:
    return TeacherOutputCache(root, key, num_samples=NUM_SAMPLES, num_views=NUM_VIEWS, **kwargs)


def _assert_matches(cache: TeacherOutputCache, teacher: FakeTeacher, round_to=None):
    """Every (view, index) read back, in a shuffled mixed-view batch, equals the teacher's output."""
    views = torch.arange(NUM_VIEWS).repeat_interleave(NUM_SAMPLES)
    indices = torch.arange(NUM_SAMPLES).repeat(NUM_VIEWS)
    perm = torch.randperm(views.numel(), generator=torch.Generator().manual_seed(3))
    views, indices = views[perm], indices[perm]
    batch = cache.get(indices, views)
    assert set(batch) == {"logits", "features"}
    for name, got in batch.items():
        want = teacher.expected(name)[views, indices]
        if round_to is not None:
            want = want.to(round_to).float()
        assert got.dtype == torch.float32
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.fixture
def built(tmp_path):
    teacher = FakeTeacher()
    cache = _cache(tmp_path).open_or_build(teacher.compute_view)
    return cache, teacher


# --------------------------------------------------------------------------- round trip


def test_round_trip_every_view_and_index(built, tmp_path):
    cache, teacher = built
    assert teacher.calls == [0, 1]
    assert cache.path == tmp_path / "teacher-abc-float32"
    assert cache.outputs == ("features", "logits")
    assert cache.nbytes == NUM_VIEWS * NUM_SAMPLES * (3 + 4) * 4
    _assert_matches(cache, teacher)
    manifest = json.loads((cache.path / MANIFEST_NAME).read_text())
    assert cache.manifest == manifest
    assert manifest["key"] == "teacher-abc"
    assert manifest["outputs"]["logits"]["shape"] == [NUM_VIEWS, NUM_SAMPLES, 3]
    assert manifest["outputs"]["features"]["shape"] == [NUM_VIEWS, NUM_SAMPLES, 2, 2]
    stored = np.load(cache.path / "logits.npy")
    np.testing.assert_array_equal(stored, teacher.expected("logits").numpy())


def test_single_view_and_returned_tensors_are_copies(built):
    cache, teacher = built
    batch = cache.get(torch.tensor([9, 0, 4]), 1)
    torch.testing.assert_close(batch["logits"], teacher.expected("logits")[1, [9, 0, 4]], rtol=0, atol=0)
    batch["logits"].zero_()
    again = cache.get([9, 0, 4], views=1)
    torch.testing.assert_close(again["logits"], teacher.expected("logits")[1, [9, 0, 4]], rtol=0, atol=0)


def test_second_open_reuses_cache_without_computing(built, tmp_path):
    _, _ = built
    other = FakeTeacher(seed=99)
    cache = _cache(tmp_path).open_or_build(other.compute_view)
    assert other.calls == []
    _assert_matches(cache, FakeTeacher())  # still the first teacher's values


def test_float16_storage_rounds_to_half(tmp_path):
    teacher = FakeTeacher()
    cache = _cache(tmp_path, dtype="float16").open_or_build(teacher.compute_view)
    assert np.load(cache.path / "logits.npy", mmap_mode="r").dtype == np.float16
    assert cache.nbytes == NUM_VIEWS * NUM_SAMPLES * (3 + 4) * 2
    _assert_matches(cache, teacher, round_to=torch.float16)


def test_float16_overflow_is_an_error(tmp_path):
    def compute(view):
        yield torch.arange(NUM_SAMPLES), {"logits": torch.full((NUM_SAMPLES, 1), 1e6)}

    with pytest.raises(ValueError, match="overflows float16"):
        _cache(tmp_path, dtype="float16").build(compute)
    assert not (tmp_path / "teacher-abc-float32").exists()


def test_different_key_uses_different_directory(tmp_path):
    first, second = FakeTeacher(seed=0), FakeTeacher(seed=1)
    cache_a = _cache(tmp_path, key="a-" + fingerprint(seed=0)).open_or_build(first.compute_view)
    cache_b = _cache(tmp_path, key="a-" + fingerprint(seed=1)).open_or_build(second.compute_view)
    assert cache_a.path != cache_b.path
    assert cache_a.path.is_dir() and cache_b.path.is_dir()
    assert second.calls == [0, 1]
    _assert_matches(cache_a, first)
    _assert_matches(cache_b, second)


def test_pickled_cache_reopens_lazily(built):
    cache, teacher = built
    payload = pickle.dumps(cache)
    assert len(payload) < 2000  # the arrays are not serialised
    clone = pickle.loads(payload)
    _assert_matches(clone, teacher)


def test_show_progress_counts_views_times_batches(tmp_path, capsys):
    teacher = FakeTeacher()
    _cache(tmp_path).build(teacher.compute_view, show_progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err  # 2 views x 3 batches of <= 4 samples


# --------------------------------------------------------------------------- out of range


@pytest.mark.parametrize(
    "indices, views, match",
    [
        ([0, 10], 0, "sample index 10 out of range"),
        ([-1], 0, "sample index -1 out of range"),
        ([0, 1], [0, 2], "view 2 out of range"),
        ([3], -1, "view -1 out of range"),
    ],
)
def test_get_out_of_range_raises_index_error(built, indices, views, match):
    cache, _ = built
    with pytest.raises(IndexError, match=match):
        cache.get(torch.tensor(indices), views)


def test_get_before_build_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        _cache(tmp_path).get([0], 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(key="../x", num_samples=3), "key"),
        (dict(key="", num_samples=3), "key"),
        (dict(key="k", num_samples=0), "num_samples"),
        (dict(key="k", num_samples=3, num_views=0), "num_views"),
        (dict(key="k", num_samples=3, dtype="int8"), "dtype"),
    ],
)
def test_constructor_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TeacherOutputCache(tmp_path, **kwargs)


# --------------------------------------------------------------------------- corruption


def _truncate(cache):
    file = cache.path / "logits.npy"
    data = file.read_bytes()
    file.write_bytes(data[:-7])
    return "logits.npy"


def _flip_byte(cache):
    file = cache.path / "features.npy"
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF
    file.write_bytes(bytes(data))
    return "features.npy"


def _delete_manifest(cache):
    (cache.path / MANIFEST_NAME).unlink()
    return MANIFEST_NAME


def _manifest_of_other_key(cache):
    other = TeacherOutputCache(cache.root, "other-key", NUM_SAMPLES, NUM_VIEWS)
    other.build(FakeTeacher(seed=5).compute_view)
    (cache.path / MANIFEST_NAME).write_bytes((other.path / MANIFEST_NAME).read_bytes())
    return MANIFEST_NAME


def _delete_array(cache):
    (cache.path / "logits.npy").unlink()
    return "logits.npy"


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (_truncate, "size"),
        (_flip_byte, "checksum"),
        (_delete_manifest, "missing"),
        (_manifest_of_other_key, "key is 'other-key'"),
        (_delete_array, "missing"),
    ],
)
def test_corrupt_cache_warns_and_is_rebuilt(built, tmp_path, corrupt, problem):
    cache, teacher = built
    cache._arrays = None  # release the maps before damaging the files
    file_name = corrupt(cache)
    fresh = FakeTeacher()
    with pytest.warns(RuntimeWarning, match=file_name) as record:
        rebuilt = _cache(tmp_path).open_or_build(fresh.compute_view)
    assert any(problem in str(w.message) for w in record)
    assert fresh.calls == [0, 1]  # recomputed, not read from the damaged files
    _assert_matches(rebuilt, fresh)
    assert rebuilt.validate()


def test_validate_removes_corrupt_directory(built):
    cache, _ = built
    cache._arrays = None
    _flip_byte(cache)
    with pytest.warns(RuntimeWarning, match="features.npy"):
        assert not cache.validate()
    assert not cache.path.exists()
    assert not cache.is_complete()


def test_changed_num_samples_is_a_mismatch(built, tmp_path):
    _ = built
    bigger = TeacherOutputCache(tmp_path, "teacher-abc", num_samples=NUM_SAMPLES + 1, num_views=NUM_VIEWS)
    assert not bigger.is_complete()
    with pytest.warns(RuntimeWarning, match=r"manifest.json: num_samples is 10, expected 11"):
        assert not bigger.validate()


# --------------------------------------------------------------------------- atomic builds


def test_interrupted_build_leaves_nothing_and_next_build_is_clean(tmp_path):
    teacher = FakeTeacher()

    def crashing(view):
        for position, batch in enumerate(teacher.compute_view(view)):
            if view == 1 and position == 1:
                raise RuntimeError("teacher crashed")
            yield batch

    cache = _cache(tmp_path)
    with pytest.raises(RuntimeError, match="teacher crashed"):
        cache.open_or_build(crashing)
    assert not cache.path.exists()
    assert not cache.is_complete()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []

    fresh = FakeTeacher()
    _assert_matches(_cache(tmp_path).open_or_build(fresh.compute_view), fresh)
    assert fresh.calls == [0, 1]


def test_leftover_temporary_of_killed_build_is_removed(tmp_path):
    stale = tmp_path / ".teacher-abc-float32.tmp-12345-deadbeef"
    stale.mkdir()
    (stale / "logits.npy").write_bytes(b"half written")
    teacher = FakeTeacher()
    cache = _cache(tmp_path).open_or_build(teacher.compute_view)
    assert not stale.exists()
    _assert_matches(cache, teacher)


def test_skipped_index_names_missing_count(tmp_path):
    teacher = FakeTeacher()

    def skipping(view):
        for indices, outputs in teacher.compute_view(view):
            keep = indices != 6
            yield indices[keep], {name: value[keep] for name, value in outputs.items()}

    with pytest.raises(ValueError, match=r"left 2 of 20 \(view, index\) pairs unfilled"):
        _cache(tmp_path).build(skipping)
    assert not (tmp_path / "teacher-abc-float32").exists()


def test_repeated_index_is_an_error(tmp_path):
    def repeating(view):
        yield torch.arange(6), {"logits": torch.zeros(6, 2)}
        yield torch.arange(5, NUM_SAMPLES), {"logits": torch.zeros(5, 2)}

    with pytest.raises(ValueError, match="sample index 5 more than once"):
        _cache(tmp_path).build(repeating)
    assert not (tmp_path / "teacher-abc-float32").exists()


def test_mismatched_batch_is_an_error(tmp_path):
    def short_output(view):
        yield torch.arange(NUM_SAMPLES), {"logits": torch.zeros(NUM_SAMPLES - 1, 2)}

    with pytest.raises(ValueError, match="'logits' has shape"):
        _cache(tmp_path).build(short_output)


def test_build_keeps_cache_completed_first_by_another_process(built, tmp_path):
    cache, teacher = built
    other = FakeTeacher(seed=42)
    _cache(tmp_path).build(other.compute_view)  # the final directory already holds a complete cache
    assert other.calls == [0, 1]
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    _assert_matches(_cache(tmp_path).load(), teacher)


def test_concurrent_open_or_build_computes_once(tmp_path):
    teacher = FakeTeacher()

    def slow(view):
        time.sleep(0.2)  # give the other caller time to arrive while this one builds
        return teacher.compute_view(view)

    results, errors = [], []

    def worker():
        try:
            results.append(_cache(tmp_path).open_or_build(slow))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert teacher.calls == [0, 1]  # one build; the other caller waited, then loaded it
    for cache in results:
        _assert_matches(cache, teacher)


# --------------------------------------------------------------------------- builds from batches


def _pair_batches(teacher: FakeTeacher, seed: int = 0, size: int = 3) -> list:
    """Every (view, index) pair, shuffled across views, in batches of (indices, views, outputs)."""
    pairs = [(view, index) for view in range(NUM_VIEWS) for index in range(NUM_SAMPLES)]
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    pairs = [pairs[i] for i in order]
    batches = []
    for start in range(0, len(pairs), size):
        chunk = pairs[start:start + size]
        views = torch.tensor([view for view, _ in chunk])
        indices = torch.tensor([index for _, index in chunk])
        inputs = torch.stack([_images(view)[index] for view, index in chunk])
        batches.append((indices, views, teacher(inputs)))
    return batches


def test_build_from_shuffled_batches_equals_view_by_view_build(tmp_path):
    teacher = FakeTeacher()
    by_view = _cache(tmp_path / "by_view").open_or_build(teacher.compute_view)
    batches = _pair_batches(teacher)
    assert len({tuple(views.tolist()) for _, views, _ in batches}) > 1  # batches really mix the views
    from_batches = _cache(tmp_path / "batches").build_from_batches(iter(batches)).load()
    _assert_matches(from_batches, teacher)
    for name in ("logits", "features"):
        np.testing.assert_array_equal(np.load(from_batches.path / f"{name}.npy"),
                                      np.load(by_view.path / f"{name}.npy"))
    manifest = json.loads((from_batches.path / MANIFEST_NAME).read_text())
    assert manifest == json.loads((by_view.path / MANIFEST_NAME).read_text())  # same bytes, same checksums
    assert manifest["version"] == FORMAT_VERSION
    assert from_batches.validate()
    assert [p.name for p in (tmp_path / "batches").iterdir() if ".tmp-" in p.name] == []


def test_build_from_batches_accepts_one_view_per_batch(tmp_path):
    teacher = FakeTeacher()
    batches = [(indices, view, outputs) for view in reversed(range(NUM_VIEWS))
               for indices, outputs in teacher.compute_view(view)]
    _assert_matches(_cache(tmp_path).build_from_batches(batches).load(), teacher)


def test_build_from_batches_missing_pair_names_count(tmp_path):
    batches = _pair_batches(FakeTeacher())
    indices, views, outputs = batches[2]
    batches[2] = (indices[1:], views[1:], {name: value[1:] for name, value in outputs.items()})
    with pytest.raises(ValueError, match=r"left 1 of 20 \(view, index\) pairs unfilled \(first missing: view"):
        _cache(tmp_path).build_from_batches(batches)
    assert not (tmp_path / "teacher-abc-float32").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_build_from_batches_duplicate_pair_is_an_error(tmp_path):
    batches = _pair_batches(FakeTeacher())
    indices, views, outputs = batches[0]
    duplicate = (indices[:1], views[:1], {name: value[:1] for name, value in outputs.items()})
    index, view = int(indices[0]), int(views[0])
    with pytest.raises(ValueError, match=rf"batch {len(batches)} yielded sample index {index} more than once "
                                         rf"\(view {view}\)"):
        _cache(tmp_path).build_from_batches([*batches, duplicate])
    assert not (tmp_path / "teacher-abc-float32").exists()

    same_batch = (torch.tensor([1, 1]), torch.tensor([0, 0]), {"logits": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match=r"batch 0 yielded sample index 1 more than once \(view 0\)"):
        _cache(tmp_path).build_from_batches([same_batch])
    different_views = (torch.tensor([1, 1]), torch.tensor([0, 1]), {"logits": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="left 18 of 20"):  # the same index in two views is two pairs
        _cache(tmp_path).build_from_batches([different_views])


@pytest.mark.parametrize(
    "batch, error, match",
    [
        ((torch.tensor([0]), torch.tensor([NUM_VIEWS]), {"logits": torch.zeros(1, 3)}), IndexError,
         f"batch 0 yielded view {NUM_VIEWS} out of range: expected 0..{NUM_VIEWS - 1}"),
        ((torch.tensor([0, 1]), torch.tensor([0]), {"logits": torch.zeros(2, 3)}), ValueError,
         "views must be an int or have the shape of indices"),
        ((torch.tensor([0]), {"logits": torch.zeros(1, 3)}), ValueError,
         r"batch 0 must be an \(indices, views, outputs\) triple"),
    ],
)
def test_build_from_batches_rejects_bad_batches(tmp_path, batch, error, match):
    with pytest.raises(error, match=match):
        _cache(tmp_path).build_from_batches([batch])
    assert not (tmp_path / "teacher-abc-float32").exists()


def test_open_or_build_from_batches_makes_batches_only_without_valid_cache(tmp_path):
    teacher = FakeTeacher()
    made = []

    def make_batches():
        made.append(1)
        return _pair_batches(teacher, seed=len(made))

    cache = _cache(tmp_path).open_or_build_from_batches(make_batches)
    assert made == [1]
    _assert_matches(cache, teacher)

    def must_not_run():
        raise AssertionError("make_batches called although a valid cache exists")

    _assert_matches(_cache(tmp_path).open_or_build_from_batches(must_not_run), teacher)
    _assert_matches(_cache(tmp_path).open_or_build(must_not_run), teacher)  # one format for both builds

    cache._arrays = None
    _flip_byte(cache)
    with pytest.warns(RuntimeWarning, match="checksum"):
        rebuilt = _cache(tmp_path).open_or_build_from_batches(make_batches)
    assert made == [1, 1]
    _assert_matches(rebuilt, teacher)


# --------------------------------------------------------------------------- file lock

LOCK_IMPLEMENTATIONS = ["file_lock", "lock file"]  # file_lock (fcntl.flock on POSIX), and its O_EXCL fallback


def _lock(path, implementation: str):
    if implementation == "lock file":
        return lock_module._lock_file(Path(path), poll_interval=0.01, stale_after=60.0)
    return file_lock(path)


def _hold_lock(path, implementation, acquired, waiter_started, released):
    """Child process: take the lock, keep it until the waiter is blocked on it, then release."""
    with _lock(path, implementation):
        acquired.set()
        waiter_started.wait(10)
        time.sleep(0.3)
        released.value = 1


def _wait_for_lock(path, implementation, waiter_started, released, saw_released, waited):
    """Child process: take the lock once the holder has gone; record what it saw."""
    waiter_started.set()
    start = time.monotonic()
    with _lock(path, implementation):
        waited.value = time.monotonic() - start
        saw_released.value = released.value


@pytest.mark.parametrize("implementation", LOCK_IMPLEMENTATIONS)
def test_file_lock_second_process_waits_for_the_first(tmp_path, implementation):
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    path = tmp_path / "locks" / "fit.lock"
    path.parent.mkdir()
    acquired, waiter_started = context.Event(), context.Event()
    released, saw_released, waited = context.Value("i", 0), context.Value("i", -1), context.Value("d", 0.0)
    holder = context.Process(target=_hold_lock, args=(str(path), implementation, acquired, waiter_started, released))
    waiter = context.Process(target=_wait_for_lock,
                             args=(str(path), implementation, waiter_started, released, saw_released, waited))
    holder.start()
    try:
        assert acquired.wait(30), "the first process never took the lock"
        waiter.start()
        waiter.join(30)
        holder.join(30)
    finally:
        for process in (holder, waiter):
            if process.pid is not None and process.is_alive():
                process.kill()
    assert holder.exitcode == 0 and waiter.exitcode == 0
    assert saw_released.value == 1  # the second process got the lock only after the first released it
    assert waited.value >= 0.2


@pytest.mark.parametrize("implementation", LOCK_IMPLEMENTATIONS)
def test_file_lock_logs_while_waiting(tmp_path, implementation, caplog):
    path = tmp_path / "fit.lock"
    entered = threading.Event()

    def second():
        with _lock(path, implementation):
            entered.set()

    caplog.set_level(logging.INFO, logger=lock_module.__name__)
    with _lock(path, implementation):
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 10
        while "held by another process" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert f"waiting for {path} (held by another process)" in caplog.text
        assert not entered.is_set()
    thread.join(10)
    assert entered.is_set()


def test_file_lock_creates_parent_and_is_reusable(tmp_path):
    path = tmp_path / "a" / "b" / "x.lock"
    for _ in range(2):
        with file_lock(path):
            assert path.parent.is_dir()


def test_file_lock_without_fcntl_uses_the_lock_file(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "fcntl", None)
    path = tmp_path / "fit.lock"
    with file_lock(path):
        assert str(os.getpid()) in path.read_text()
    assert not path.exists()


def test_lock_file_fallback_breaks_a_stale_lock_and_removes_its_file(tmp_path, caplog):
    path = tmp_path / "fit.lock"
    path.write_text("12345 elsewhere dead\n")
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=lock_module.__name__):
        with lock_module._lock_file(path, poll_interval=0.01, stale_after=30.0):
            assert "dead" not in path.read_text()  # our own lock file now
    assert time.monotonic() - start < 5
    assert "stale lock" in caplog.text
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_lock_file_fallback_refreshes_a_lock_held_longer_than_stale_after(tmp_path):
    path = tmp_path / "fit.lock"
    released, order = threading.Event(), []

    def waiter():
        with lock_module._lock_file(path, poll_interval=0.01, stale_after=0.6):
            order.append(released.is_set())

    with lock_module._lock_file(path, poll_interval=0.01, stale_after=0.6):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(1.5)  # well past stale_after: only the refresh keeps the waiter out
        released.set()
    thread.join(10)
    assert order == [True]


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_stable_and_order_independent():
    a = fingerprint(teacher="inception_resnet_v1", seed=0, views=2, size=(160, 160), aug={"flip": True, "crop": 0.9})
    b = fingerprint(aug=OrderedDict([("crop", 0.9), ("flip", True)]), size=[160, 160], views=2, seed=0,
                    teacher="inception_resnet_v1")
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0
    assert a == fingerprint(teacher="inception_resnet_v1", seed=0, views=2, size=(160, 160),
                            aug={"crop": 0.9, "flip": True})


@pytest.mark.parametrize(
    "changed",
    [dict(seed=1), dict(views=3), dict(size=(128, 160)), dict(aug={"flip": False, "crop": 0.9})],
)
def test_fingerprint_changes_with_values(changed):
    base = dict(teacher="t", seed=0, views=2, size=(160, 160), aug={"flip": True, "crop": 0.9})
    assert fingerprint(**base) != fingerprint(**{**base, **changed})


def test_fingerprint_rejects_non_plain_values_naming_the_key():
    with pytest.raises(TypeError, match="'weights'"):
        fingerprint(seed=0, weights=torch.zeros(2))
    with pytest.raises(TypeError, match=r"'aug.fn'"):
        fingerprint(aug={"fn": object()})


def test_module_fingerprint_tracks_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    clone = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    clone.load_state_dict(model.state_dict())
    assert module_fingerprint(model) == module_fingerprint(clone)

    with torch.no_grad():
        clone[0].weight[1, 2] += 1e-3
    assert module_fingerprint(model) != module_fingerprint(clone)

    clone.load_state_dict(model.state_dict())
    clone[1].running_mean.fill_(0.5)  # buffers count too
    assert module_fingerprint(model) != module_fingerprint(clone)

    other_class = nn.Sequential(nn.Linear(4, 3))
    wrapped = nn.ModuleList([nn.Linear(4, 3)])
    wrapped.load_state_dict(other_class.state_dict())
    assert module_fingerprint(other_class) != module_fingerprint(wrapped)
