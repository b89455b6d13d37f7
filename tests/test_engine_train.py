"""End-to-end runs of the engine on the tiny smoke configuration: results.json, checkpoints, resume, DDP."""

import json
import os
import re
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from distill import load_student
from distill.models.checkpoint import CheckpointError, save_student
from distill.cost import profile
from distill.models import MobileNetV1
from distill.report import collect_runs, report_rows
from distill.engine.run import run

pytestmark = pytest.mark.slow


def test_smoke_run_writes_the_results_contract_and_an_importable_student(tiny_smoke_cfg, tmp_path):
    cfg = tiny_smoke_cfg("student.width_multiplier=0.25")
    results = run(cfg, run_dir=tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["recipe"] == "smoke" and on_disk["primary_metric"] == "top1"
    assert set(on_disk) >= {"recipe", "teacher", "student", "primary_metric", "student_checkpoint", "wall_time_s", "config"}
    for role in ("teacher", "student"):
        assert 0.0 <= on_disk[role]["metrics"]["top1"] <= on_disk[role]["metrics"]["top5"] <= 1.0
    student = on_disk["student"]
    assert (student["name"], student["width_multiplier"], student["resolution"]) == ("mobilenet_v1", 0.25, 32)
    model = load_student(on_disk["student_checkpoint"])
    assert not model.training
    expected = profile(MobileNetV1(width_multiplier=0.25, num_classes=10), input_size=(3, 32, 32))
    assert (student["mult_adds"], student["params"]) == (expected.mult_adds, expected.params)
    # the imported student reproduces the run's evaluation
    from distill.tasks.base import predict
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    logits, targets = predict(model, datamodule.eval_dataloader("test"))
    assert (logits.argmax(1) == targets).float().mean().item() == pytest.approx(student["metrics"]["top1"], abs=1e-6)
    assert results["student"]["metrics"] == on_disk["student"]["metrics"]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_second_run_reuses_the_fitted_teacher_and_cached_outputs(tiny_smoke_cfg, tmp_path, caplog):
    run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=tmp_path / "a")
    caplog.set_level("INFO")
    second = run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=tmp_path / "b")
    assert second["teacher"]["source"] == "cache"
    assert "loaded from cache" in caplog.text
    assert len(list((tmp_path / "cache" / "teacher_outputs").iterdir())) >= 1


def test_channels_last_computes_the_same_gradients():
    torch.manual_seed(0)
    plain = MobileNetV1(width_multiplier=0.25, num_classes=10)
    nhwc = MobileNetV1(width_multiplier=0.25, num_classes=10)
    nhwc.load_state_dict(plain.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 32, 32)
    for model in (plain, nhwc):
        model(images).logsumexp(1).sum().backward()
    assert torch.allclose(plain(images), nhwc(images), atol=1e-4)
    for (name, a), b in zip(plain.named_parameters(), nhwc.parameters()):  # equal up to float summation order
        assert (a.grad - b.grad).abs().max() <= 1e-2 * a.grad.abs().max(), name


def test_channels_last_run_has_its_own_caches_and_saves_a_plain_checkpoint(tiny_smoke_cfg, tmp_path, caplog):
    plain = run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=tmp_path / "plain")
    caplog.set_level("INFO", logger="distill.engine.keys")
    nhwc = run(tiny_smoke_cfg("trainer.max_epochs=1", "channels_last=true"), run_dir=tmp_path / "nhwc")
    # the layout changes the summation order, so it is part of both keys: the teacher is fitted and predicts anew
    assert nhwc["teacher"]["source"] == "fitted"
    assert "teacher cache miss: channels_last changed" in caplog.text
    assert len([p for p in (tmp_path / "cache" / "teacher_outputs").iterdir() if not p.name.startswith(".")]) == 2
    # Adam turns rounding differences into different (equally good) trajectories, so only the level is compared
    assert nhwc["student"]["metrics"]["top1"] == pytest.approx(plain["student"]["metrics"]["top1"], abs=0.05)
    model = load_student(nhwc["student_checkpoint"])
    assert isinstance(model, MobileNetV1) and model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


class _Interrupt(pl.Callback):
    """Raises in the middle of the second epoch, like a killed job."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("simulated kill")


def test_resume_after_a_kill_ends_with_the_same_weights(tiny_smoke_cfg, tmp_path):
    overrides = ("trainer.max_epochs=3", "data.num_views=2")
    reference = run(tiny_smoke_cfg(*overrides), run_dir=tmp_path / "reference")
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tiny_smoke_cfg(*overrides), run_dir=tmp_path / "killed", callbacks=[_Interrupt()])
    assert not (tmp_path / "killed" / "results.json").exists()
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").is_file()
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not [key for key in saved["state_dict"] if key.startswith("teacher.")]  # rebuilt on resume, not saved
    assert any(key.startswith("student.") for key in saved["state_dict"]) and saved["optimizer_states"]
    resumed = run(tiny_smoke_cfg(*overrides, "resume=true"), run_dir=tmp_path / "killed")
    a = torch.load(reference["student_checkpoint"], weights_only=True)["state_dict"]
    b = torch.load(resumed["student_checkpoint"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["student"]["metrics"]["top1"] == reference["student"]["metrics"]["top1"]


def test_resume_without_a_checkpoint_says_where_it_looked(tiny_smoke_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*last.ckpt"):
        run(tiny_smoke_cfg("resume=true"), run_dir=tmp_path / "fresh")


def test_ddp_on_two_cpu_processes_fits_the_teacher_and_builds_the_cache_once(tmp_path):
    from conftest import TINY_SMOKE

    env = dict(os.environ, OMP_NUM_THREADS="1", DISTILL_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "distill", *TINY_SMOKE, "trainer=ddp_cpu", "trainer.max_epochs=1",
               f"hydra.run.dir={tmp_path / 'ddp'}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    # both ranks ran the pipeline (rank 1 loads what rank 0 made), yet the teacher was fitted once
    assert output.count("fitting the teacher") == 1
    assert output.count("loaded from cache") == 1
    assert output.count("teacher-output cache written") == 1
    digests = re.findall(r"rank (\d) reads cache \w+ \(digest (\w+)\)", output)
    assert sorted(rank for rank, _ in digests) == ["0", "1"]
    assert len({digest for _, digest in digests}) == 1  # the two ranks read identical teacher outputs
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["config"]["trainer"]["strategy"] == "ddp" and results["config"]["trainer"]["devices"] == 2
    assert 0.0 <= results["student"]["metrics"]["top1"] <= 1.0
    assert "unused parameters" not in done.stderr.lower()
    # the report reads the DDP run like any other: one teacher row and one student row, from rank 0's results
    rows = report_rows(collect_runs(tmp_path / "ddp"), tmp_path / "ddp")
    assert [r["status"] for r in rows] == ["teacher", "ok"]
    assert rows[1]["value"] == results["student"]["metrics"]["top1"]
    assert rows[1]["mult_adds_m"] == pytest.approx(results["student"]["mult_adds"] / 1e6, abs=0.01)


def test_student_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_student(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.ckpt"):
        load_student(corrupt)
    path = save_student(tmp_path / "ok.ckpt", MobileNetV1(width_multiplier=0.25, num_classes=3), MobileNetV1,
                        {"width_multiplier": 0.25, "num_classes": 3})
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        load_student(truncated)
    # weights of another architecture under this checkpoint's arguments
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = MobileNetV1(width_multiplier=0.5, num_classes=3).state_dict()
    torch.save(payload, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt.*wrong shape"):
        load_student(tmp_path / "other.ckpt")
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2"}, tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="Lightning training checkpoint"):
        load_student(tmp_path / "lightning.ckpt")
    assert torch.equal(load_student(path).fc.weight, torch.load(path, weights_only=True)["state_dict"]["fc.weight"])


class _StageDevices(pl.Callback):
    """Records, for every Lightning stage a run starts, which stage it is and where the module runs."""

    seen: list = []

    def on_fit_start(self, trainer, pl_module):
        self.seen.append(("fit", type(pl_module).__name__, trainer.strategy.root_device, pl_module.device))

    def on_predict_start(self, trainer, pl_module):
        self.seen.append(("predict", type(pl_module).__name__, trainer.strategy.root_device, pl_module.device))


def test_every_stage_runs_through_the_trainer_it_is_given(tiny_smoke_cfg, tmp_path, monkeypatch):
    """Fit, predict and evaluation all use the configured Trainer's device, not a hard-coded CPU."""
    import distill.engine.build as build
    import distill.engine.run as engine_run
    from distill.tasks import ClassificationTask

    _StageDevices.seen = []
    evaluated = []
    made = {"stage": engine_run.stage_trainer, "single": build.single_device_trainer}

    def with_recorder(factory):
        def make(*args, **kwargs):
            trainer = factory(*args, **kwargs)
            trainer.callbacks.append(_StageDevices())
            return trainer
        return make

    monkeypatch.setattr(engine_run, "stage_trainer", with_recorder(made["stage"]))
    monkeypatch.setattr(build, "single_device_trainer", with_recorder(made["single"]))
    original = ClassificationTask.evaluate
    monkeypatch.setattr(ClassificationTask, "evaluate",
                        lambda self, model, dm, res, device="cpu": evaluated.append(device) or original(
                            self, model, dm, res, device=device))
    run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=tmp_path / "run")
    stages = [(stage, module) for stage, module, _, _ in _StageDevices.seen]
    assert stages == [("fit", "TeacherFitModule"), ("predict", "TeacherOutputPredictor"), ("fit", "DistillationModule")]
    for _, _, root, device in _StageDevices.seen:
        assert device == root  # each module was moved to its Trainer's root device
    assert evaluated == [_StageDevices.seen[-1][2]] * 2  # teacher and student evaluated on the fit Trainer's device


def test_a_failed_rerun_never_reports_the_earlier_results(tiny_smoke_cfg, tmp_path):
    """A re-run in a used folder moves the earlier results aside first: if it fails, the report shows a failure."""
    folder = tmp_path / "run"
    first = run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=folder)
    assert first["status"] == "ok"
    before = (folder / "logs" / "metrics.csv").read_text()
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tiny_smoke_cfg("trainer.max_epochs=3", "data.num_views=2"), run_dir=folder, callbacks=[_Interrupt()])
    assert not (folder / "results.json").exists()
    kept = sorted(p.name for p in folder.glob("results.previous-*.json"))
    assert len(kept) == 1 and json.loads((folder / kept[0]).read_text())["student"] == first["student"]
    assert [p.read_text() for p in (folder / "logs").glob("metrics.previous-*.csv")] == [before]
    rows = report_rows(collect_runs(folder), folder)
    assert [row["status"].split(":")[0] for row in rows] == ["failed"]


def test_resume_appends_to_the_log_and_refuses_a_changed_config(tiny_smoke_cfg, tmp_path):
    import csv

    folder = tmp_path / "killed"
    overrides = ("trainer.max_epochs=3", "data.num_views=2", "trainer.log_every_n_steps=1")
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tiny_smoke_cfg(*overrides), run_dir=folder, callbacks=[_Interrupt()])
    rows_before = list(csv.DictReader((folder / "logs" / "metrics.csv").open()))
    with pytest.raises(ValueError, match=r"optimizer.optimizer.lr: 0.01 -> 0.5.*resume_force=true"):
        run(tiny_smoke_cfg(*overrides, "resume=true", "optimizer.optimizer.lr=0.5"), run_dir=folder)
    run(tiny_smoke_cfg(*overrides, "resume=true"), run_dir=folder)
    rows_after = list(csv.DictReader((folder / "logs" / "metrics.csv").open()))
    steps = [int(row["step"]) for row in rows_after if row.get("train/loss_step")]
    assert len(rows_after) > len(rows_before) > 0
    for old, kept in zip(rows_before, rows_after):  # the interrupted run's rows are still there, first
        assert {k: v for k, v in old.items() if v} == {k: v for k, v in kept.items() if v}
    assert steps[0] == 0 and max(steps) == 11  # the log covers the interrupted part and the rest: 3 epochs x 4
    assert len([p for p in folder.iterdir() if p.name.startswith("results.")]) == 1  # this run's results.json


def test_the_same_command_twice_gives_identical_students(tiny_smoke_cfg, tmp_path):
    """Determinism: fitted teacher, cached teacher outputs and the live teacher all give the same student."""
    first = run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=tmp_path / "a")
    again = run(tiny_smoke_cfg("trainer.max_epochs=1"), run_dir=tmp_path / "b")  # teacher and outputs from the cache
    live = run(tiny_smoke_cfg("trainer.max_epochs=1", "cache.enabled=false"), run_dir=tmp_path / "c")
    assert again["teacher"]["source"] == "cache" and live["teacher"]["source"] == "fitted"
    weights = [torch.load(r["student_checkpoint"], weights_only=True)["state_dict"] for r in (first, again, live)]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
        assert torch.allclose(weights[0][key].float(), weights[2][key].float(), atol=1e-5), key
    assert first["student"]["metrics"] == again["student"]["metrics"]
    assert first["teacher"]["metrics"] == again["teacher"]["metrics"] == live["teacher"]["metrics"]


def test_cached_teacher_outputs_equal_the_live_teacher_on_real_training_batches(tiny_smoke_cfg, tmp_path):
    from distill.engine.build import build_data_and_task, build_models
    from distill.engine.outputs import cache_teacher_outputs
    from distill.engine.trainers import stage_trainer

    cfg = tiny_smoke_cfg()
    task, datamodule = build_data_and_task(cfg)
    models = build_models(cfg, task, datamodule, tmp_path)
    cache = cache_teacher_outputs(models.module, datamodule, stage_trainer(cfg, tmp_path, fit=False),
                                  models.cache_root)
    loader = datamodule.train_dataloader()
    for epoch in range(datamodule.num_views):  # every augmentation view
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            cached = cache.get(batch["index"], batch["view"])
            live = models.module.teacher_forward(batch)
            for name, value in live.items():
                assert torch.allclose(cached[name], value, atol=1e-5, rtol=1e-5), (epoch, name)


def test_the_teacher_output_stage_keeps_no_tensor_per_batch(tiny_smoke_cfg, tmp_path, monkeypatch):
    """Each batch's outputs go to this rank's shard files as they come: holding one tensor per batch until the end
    pinned the memory of every batch (about 440 MB for 80,000 pairs), so memory grew with the data set."""
    import weakref

    from distill.engine.build import build_data_and_task, build_models
    from distill.engine.outputs import PairDataset, cache_teacher_outputs
    from distill.engine.trainers import stage_trainer

    cfg = tiny_smoke_cfg("data.eval_batch_size=16")  # several batches
    task, datamodule = build_data_and_task(cfg)
    models = build_models(cfg, task, datamodule, tmp_path)
    forward, outputs, alive = models.module.teacher_forward, [], []

    def recorded(batch):
        alive.append(sum(ref() is not None for ref in outputs))  # earlier batches' outputs still held
        result = forward(batch)
        outputs.extend(weakref.ref(value) for value in result.values())
        return result

    monkeypatch.setattr(models.module, "teacher_forward", recorded)
    cache = cache_teacher_outputs(models.module, datamodule, stage_trainer(cfg, tmp_path, fit=False),
                                  models.cache_root)
    assert len(alive) > 3 and max(alive) <= 1, alive
    monkeypatch.undo()
    dataset = datamodule.dataset("train", with_teacher_image=True)
    pairs = PairDataset(dataset, datamodule.num_views, rank=1, world_size=3)  # every 3rd pair from the 2nd, view-major
    expected = [(index, view) for view in range(datamodule.num_views) for index in range(len(dataset))][1::3]
    assert [pairs.pair(item) for item in range(len(pairs))] == expected
    batch = next(iter(datamodule.view_dataloader(1)))
    cached = cache.get(batch["index"], batch["view"])
    for name, value in models.module.teacher_forward(batch).items():
        assert torch.allclose(cached[name], value, atol=1e-5, rtol=1e-5), name


def test_face_alignment_runs_on_the_trainers_device(monkeypatch):
    """MTCNN alignment happens before any Trainer exists: the engine hands the data module the Trainer's device."""
    from conftest import compose_config

    from distill.engine.trainers import trainer_device

    assert trainer_device(compose_config(["recipe=facenet", "trainer=cpu"])) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert trainer_device(compose_config(["recipe=facenet", "trainer=gpu"])) == "cuda:1"
    assert trainer_device(compose_config(["recipe=facenet", "trainer=ddp"])) == "cuda:1"  # accelerator auto
    cfg = compose_config(["recipe=facenet", "data=face_folder", "data.root=/x", "data.lfw_root=/y", "data.align=true"])
    assert cfg.data.align_device is None  # left to the engine (distill/engine/build.py)


def test_two_runs_building_the_same_teacher_outputs_at_once_both_finish(tiny_smoke_cfg, tmp_path, monkeypatch):
    """Multi-process jobs predict without the prediction lock, so two of them may predict the same outputs at once.
    Here (the lock left out, as for such jobs) a second run builds and publishes the cache while the first is
    halfway through predicting: the first must still finish, and open the published cache. When both wrote to one
    shard folder, the run that published first removed the other's shard files under it (FileNotFoundError)."""
    import contextlib

    from distill.engine import outputs
    from distill.engine.build import build_data_and_task, build_models
    from distill.engine.outputs import cache_teacher_outputs
    from distill.engine.trainers import stage_trainer

    monkeypatch.setattr(outputs, "one_predictor", lambda cache, world_size: contextlib.nullcontext())
    cfg = tiny_smoke_cfg("data.eval_batch_size=16")  # several batches
    task, datamodule = build_data_and_task(cfg)
    models = build_models(cfg, task, datamodule, tmp_path)
    forward, calls, other = models.module.teacher_forward, [], {}

    def interrupted(batch):
        calls.append(len(batch["index"]))
        if len(calls) == 2:  # the first run has written one batch: the other run does the whole build now
            monkeypatch.setattr(models.module, "teacher_forward", forward)
            other["cache"] = cache_teacher_outputs(models.module, datamodule,
                                                   stage_trainer(cfg, tmp_path / "other", fit=False),
                                                   models.cache_root)
            monkeypatch.setattr(models.module, "teacher_forward", interrupted)
        return forward(batch)

    monkeypatch.setattr(models.module, "teacher_forward", interrupted)
    cache = cache_teacher_outputs(models.module, datamodule, stage_trainer(cfg, tmp_path, fit=False),
                                  models.cache_root)
    monkeypatch.undo()
    pairs = len(datamodule.dataset("train")) * datamodule.num_views
    assert sum(calls) == pairs and len(calls) > 3  # the first run predicted every pair, around the other's build
    assert cache.path == other["cache"].path and cache.manifest == other["cache"].manifest
    assert not (models.cache_root / ".shards").exists() or not any((models.cache_root / ".shards").rglob("*.npy"))
    batch = next(iter(datamodule.view_dataloader(0)))
    for name, value in models.module.teacher_forward(batch).items():
        assert torch.allclose(cache.get(batch["index"], batch["view"])[name], value, atol=1e-5, rtol=1e-5), name


def test_a_second_run_wanting_the_same_teacher_outputs_waits_and_reads_them(tiny_smoke_cfg, tmp_path, monkeypatch):
    """The jobs of a parallel sweep share one teacher: while one predicts its outputs, another that wants them waits
    on the cache's prediction lock, then reads the published cache without predicting anything itself."""
    import threading

    from distill.engine.build import build_data_and_task, build_models
    from distill.engine.cache import lock
    from distill.engine.outputs import cache_teacher_outputs
    from distill.engine.trainers import stage_trainer

    cfg = tiny_smoke_cfg("data.eval_batch_size=16")  # several batches
    task, datamodule = build_data_and_task(cfg)
    models = build_models(cfg, task, datamodule, tmp_path)
    forward, callers, waiting, other = models.module.teacher_forward, [], threading.Event(), {}
    monkeypatch.setattr(lock, "_log_waiting", lambda path: waiting.set())

    def second_run():
        other["cache"] = cache_teacher_outputs(models.module, datamodule,
                                               stage_trainer(cfg, tmp_path / "other", fit=False), models.cache_root)

    thread = threading.Thread(target=second_run)

    def counted(batch):
        callers.append(threading.get_ident())
        if len(callers) == 2:  # the first run is predicting: the second starts now and must wait for it
            thread.start()
            assert waiting.wait(timeout=120), "the second run did not wait for the first's prediction"
        return forward(batch)

    monkeypatch.setattr(models.module, "teacher_forward", counted)
    cache = cache_teacher_outputs(models.module, datamodule, stage_trainer(cfg, tmp_path, fit=False),
                                  models.cache_root)
    thread.join(timeout=120)
    assert not thread.is_alive()
    pairs = len(datamodule.dataset("train")) * datamodule.num_views
    assert set(callers) == {threading.get_ident()}  # only the first run predicted ...
    assert len(callers) == -(-pairs // 16)  # ... each batch once
    assert other["cache"].path == cache.path and other["cache"].manifest == cache.manifest


def test_caching_a_teacher_layer_that_did_not_run_names_the_layer_and_its_term(tiny_smoke_cfg, tmp_path,
                                                                              monkeypatch):
    """The cache holds one output per image, so a teacher layer that skipped a batch cannot fill it: the run stops,
    naming the layer and the loss term, rather than failing inside the shard writer."""
    from distill.engine.build import build_data_and_task, build_models
    from distill.engine.outputs import cache_teacher_outputs
    from distill.engine.trainers import stage_trainer

    cfg = tiny_smoke_cfg()
    task, datamodule = build_data_and_task(cfg)
    models = build_models(cfg, task, datamodule, tmp_path)
    forward = models.module.teacher_forward
    layer, term = models.module.specs[0].teacher, models.module.specs[0].id
    monkeypatch.setattr(models.module, "teacher_forward",
                        lambda batch: {**forward(batch), layer: None})
    with pytest.raises(RuntimeError, match=rf"layer\(s\) \['{layer}'\] \(loss terms \['{term}'\]\) did not run"):
        cache_teacher_outputs(models.module, datamodule, stage_trainer(cfg, tmp_path, fit=False), models.cache_root)
    assert not any((models.cache_root).rglob("manifest*"))  # nothing published
