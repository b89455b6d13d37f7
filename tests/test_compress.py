"""The compress stage: calibration data, int8 files that agree with the float student, pruned students counted
exactly and stored in the one checkpoint format, quantisation-aware training, bad requests refused before any work,
and end to end on the tiny smoke recipe (engine and ``python -m distill.compress``)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import TINY_SMOKE, compose_config
from distill.core.cost import profile
from distill.core.deploy import OnnxRuntimeModel, TensorCalibrationReader, export_onnx
from distill.core.deploy_latency import eager_runner, measure_side_by_side
from distill.engine.compression import check_compression, parse_request
from distill.engine.compression.calibration import calibration_batches, calibration_reader
from distill.engine.compression.prune import PRUNED_BUILDER, prune_to_target
from distill.engine.compression.quantize import (
    convert_qat,
    prepare_qat,
    ptq_onnxruntime,
    ptq_torchao,
    save_pt2,
    write_int8_onnx,
)
from distill.engine.evaluation import _ort_latency
from distill.models.checkpoint import load_student, save_student
from distill.models.mobilenet import MobileNetV1
from distill.models.pruned import build_pruned

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

RES = 32
BUILDER = "distill.models.mobilenet.MobileNetV1"
KWARGS = {"width_multiplier": 0.25, "num_classes": 10}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).min())


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(96, 3, RES, RES, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def fitted(images):
    """A tiny MobileNetV1 fitted for a few steps (trained BN statistics and weights, not an initialisation)."""
    torch.manual_seed(0)
    model = MobileNetV1(**KWARGS)
    projection = torch.randn(3 * 8 * 8, 10, generator=torch.Generator().manual_seed(1))
    labels = (F.adaptive_avg_pool2d(images, 8).flatten(1) @ projection).argmax(dim=1)  # a function of the image
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(20):
        batch = torch.arange(step * 16, step * 16 + 16) % 64
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _copy(model):
    copy = MobileNetV1(**KWARGS)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


# --- calibration ------------------------------------------------------------------------------------------------
def test_calibration_reader_yields_training_images_as_the_student_sees_them(tmp_path):
    from distill.engine.build import build_data_and_task

    cfg = compose_config(TINY_SMOKE + [f"cache.dir={tmp_path}"])
    _, datamodule = build_data_and_task(cfg)
    batches = calibration_batches(datamodule, 24, count=40)
    assert sum(len(b) for b in batches) == 40
    assert all(b.shape[1:] == (3, 24, 24) and b.dtype == torch.float32 for b in batches)
    expected = next(iter(datamodule.eval_dataloader("train", resolution=24)))["image"][:len(batches[0])]
    assert torch.equal(batches[0], expected)  # unaugmented training images, in order
    reader = calibration_reader(datamodule, 24, count=40)
    fed = []
    while (item := reader.get_next()) is not None:
        fed.append(item["image"])
    assert len(fed) == len(reader) and sum(len(b) for b in fed) == 40 == reader.num_images
    reader.rewind()
    assert reader.get_next()["image"].shape == fed[0].shape


# --- int8 --------------------------------------------------------------------------------------------------------
def test_onnxruntime_int8_agrees_with_the_float_student(fitted, images, tmp_path):
    reader = TensorCalibrationReader(images[:64].split(16))
    out, similarity = ptq_onnxruntime(_copy(fitted), RES, reader, tmp_path / "student.onnx",
                                      tmp_path / "student.int8.onnx")
    assert similarity > 0.99
    with torch.no_grad():
        expected = fitted(images[64:])
    assert _cosine(OnnxRuntimeModel(out)(images[64:]), expected) > 0.99
    assert out.stat().st_size < 0.5 * (tmp_path / "student.onnx").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.int8.onnx", "student.onnx"]  # no temporaries


def test_int8_keeps_the_first_convolutions_float_when_asked(fitted, images, tmp_path):
    import onnx

    from distill.core.deploy import first_convolutions

    reader = TensorCalibrationReader(images[:64].split(16))
    out, similarity = ptq_onnxruntime(_copy(fitted), RES, reader, tmp_path / "student.onnx",
                                      tmp_path / "student.int8.onnx", float_convs=2)
    assert similarity > 0.99
    graph = onnx.load(str(out)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    fed_int8 = [all(name in dequantized for name in node.input[:2]) for node in convs]  # input and weight
    # MobileNetV1 0.25 has 27 convolutions: the stem and the first depthwise one stay float, the rest are int8
    assert len(convs) == 27 and fed_int8 == [False, False] + [True] * 25
    assert [node.name for node in convs[:2]] == first_convolutions(tmp_path / "student.onnx", 2)
    with torch.no_grad():
        assert _cosine(OnnxRuntimeModel(out)(images[64:]), fitted(images[64:])) > 0.99


def test_torchao_int8_agrees_with_the_float_student(fitted, images, tmp_path):
    pytest.importorskip("torchao")
    converted = ptq_torchao(_copy(fitted), RES, list(images[:64].split(16)))
    assert converted.eval() is converted  # evaluation code can treat it as any module
    with torch.no_grad():
        assert _cosine(converted(images[64:]), fitted(images[64:])) > 0.99
    path = save_pt2(converted, tmp_path / "student.int8.pt2", RES)
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        assert torch.allclose(loaded(images[64:]), converted(images[64:]))
    float_bytes = sum(p.numel() * 4 for p in fitted.parameters())
    assert path.stat().st_size < float_bytes  # int8 weights only, not the float ones beside them


@pytest.mark.slow  # the int8 graph's ONNX export takes most of it
def test_quantisation_aware_training_trains_and_exports_int8(fitted, images, tmp_path):
    pytest.importorskip("torchao")
    prepared = prepare_qat(_copy(fitted), RES)
    optimizer = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    prepared.train()
    with torch.no_grad():
        targets = fitted(images[:64])
    for step in range(3):
        loss = F.mse_loss(prepared(images[step * 16:(step + 1) * 16]), targets[step * 16:(step + 1) * 16])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    converted = convert_qat(prepared)
    out, similarity = write_int8_onnx(converted, tmp_path / "student.qat.int8.onnx", RES, images[64:])
    assert similarity > 0.99  # ONNX Runtime's int8 kernels reproduce the PyTorch int8 model
    with torch.no_grad():
        assert _cosine(OnnxRuntimeModel(out)(images[64:]), fitted(images[64:])) > 0.95


# --- pruning -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pruned(fitted):
    pytest.importorskip("torch_pruning")
    return prune_to_target(_copy(fitted), BUILDER, KWARGS, RES, target=0.5, tolerance=0.03)


def _hand_count(kwargs: dict, resolution: int) -> int:
    """Mult-adds of a pruned MobileNetV1 from its channel record: each conv's output size times its fan-in."""
    base = MobileNetV1(**kwargs["base_kwargs"])
    channels = kwargs["channels"]
    total, size = 0, resolution
    for name, module in base.named_modules():
        get = lambda attribute, m=module, n=name: channels.get(f"{n}.{attribute}", getattr(m, attribute))  # noqa: E731
        if isinstance(module, torch.nn.Conv2d):
            k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]
            size = (size + 2 * p - k) // s + 1
            total += size * size * get("out_channels") * (get("in_channels") // get("groups")) * k * k
        elif isinstance(module, torch.nn.Linear):
            total += get("in_features") * get("out_features")
    return total


def test_pruning_reaches_its_target_and_profile_counts_it_exactly(pruned, fitted):
    assert abs(pruned.ratio - 0.5) <= 0.03
    assert pruned.builder == PRUNED_BUILDER and pruned.kwargs["base_builder"] == BUILDER
    counted = profile(pruned.model, (3, RES, RES))
    assert counted.mult_adds == pruned.mult_adds_after == _hand_count(pruned.kwargs, RES)
    assert counted.mult_adds < profile(fitted, (3, RES, RES)).mult_adds
    assert pruned.model(torch.zeros(2, 3, RES, RES)).shape == (2, 10)  # the output keeps its size
    base = MobileNetV1(**pruned.kwargs["base_kwargs"])
    for key, count in pruned.kwargs["channels"].items():  # round_to=8: pruned layers keep multiples of 8
        module_name, attribute = key.rsplit(".", 1)
        if getattr(base.get_submodule(module_name), attribute) % 8 == 0:
            assert count % 8 == 0, (key, count)


def test_pruned_checkpoint_round_trips_with_weights_only(pruned, images, tmp_path):
    path = save_student(tmp_path / "student.pruned.ckpt", pruned.model, pruned.builder, pruned.kwargs,
                        meta={"resolution": RES})
    payload = torch.load(path, weights_only=True)  # plain data: no pickled module
    assert payload["builder"] == PRUNED_BUILDER and isinstance(payload["kwargs"]["channels"], dict)
    loaded = load_student(path)
    with torch.no_grad():
        assert torch.allclose(loaded(images[:8]), pruned.model.eval()(images[:8]), atol=1e-6)
    assert profile(loaded, (3, RES, RES)).mult_adds == pruned.mult_adds_after


def test_a_bad_channel_record_is_refused():
    with pytest.raises(ValueError, match="no module"):
        build_pruned(BUILDER, KWARGS, {"nope.out_channels": 3})
    with pytest.raises(ValueError, match="positive int"):
        build_pruned(BUILDER, KWARGS, {"stem.conv.out_channels": 0})


# --- latency -----------------------------------------------------------------------------------------------------
def test_side_by_side_latency_reports_every_runtime(fitted, tmp_path):
    measured = measure_side_by_side({"eager": eager_runner(_copy(fitted)), "ort_int8": None}, RES, threads=1,
                                    runs=2, warmup=1, batch=4, batch_runs=1)
    assert measured["threads"] == 1
    assert measured["latency_b1_ms"]["eager"] > 0 and measured["latency_b1_ms"]["ort_int8"] is None
    assert measured["throughput_b4_ips"]["eager"] > 0


def test_each_round_times_a_burst_of_back_to_back_calls(monkeypatch):
    from distill.core import deploy_latency

    clock = {"now": 0.0}
    calls = {"fast": 0, "slow": 0}
    monkeypatch.setattr(deploy_latency.time, "perf_counter", lambda: clock["now"])

    def runner(name, ms):
        def run(images):
            calls[name] += 1
            clock["now"] += ms / 1000.0
        return run

    measured = measure_side_by_side({"fast": runner("fast", 0.5), "slow": runner("slow", 30.0)}, 8, runs=3,
                                    warmup=1, batch_runs=0, burst_ms=20.0)
    assert measured["latency_b1_ms"] == {"fast": pytest.approx(0.5), "slow": pytest.approx(30.0)}
    assert calls == {"fast": 1 + 3 * 40, "slow": 1 + 3 * 1}  # warm-up, then 20 ms of calls (at least one) per round
    calls.update(fast=0, slow=0)
    measure_side_by_side({"fast": runner("fast", 0.5), "slow": runner("slow", 30.0)}, 8, runs=3, warmup=0,
                         batch_runs=0, burst_ms=0)
    assert calls == {"fast": 3, "slow": 3}  # one call per round
    with pytest.raises(ValueError, match="burst_ms"):
        measure_side_by_side({"fast": runner("fast", 0.5)}, 8, burst_ms=-1)


def test_onnx_runtime_latency_is_measured_or_left_out(fitted, monkeypatch):
    from distill.engine import evaluation

    assert _ort_latency(_copy(fitted), torch.zeros(1, 3, RES, RES), RES, runs=2) > 0
    assert _ort_latency(_copy(fitted), [torch.zeros(3, RES, RES)], RES, runs=2) is None  # a detector's input

    def failing_export(*args, **kwargs):
        raise RuntimeError("the exporter cannot capture this model")

    monkeypatch.setattr(evaluation, "ort_latency_ms", failing_export)
    assert _ort_latency(_copy(fitted), torch.zeros(1, 3, RES, RES), RES, runs=2) is None  # logged, not raised


def test_export_onnx_refuses_a_graph_that_differs(fitted, tmp_path, monkeypatch):
    from distill.core import deploy

    monkeypatch.setattr(deploy.OnnxRuntimeModel, "forward", lambda self, x: torch.ones(len(x), 10) * 99)
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_onnx(_copy(fitted), tmp_path / "m.onnx", RES)
    assert list(tmp_path.iterdir()) == []


# --- bad requests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings,message", [
    ({"methods": ["prune"], "target_mult_adds": 1.5}, r"target_mult_adds must be in \(0, 1\)"),
    ({"methods": ["prune"], "target_mult_adds": 0}, r"target_mult_adds must be in \(0, 1\)"),
    ({"methods": ["quantise"]}, r"unknown method 'quantise'; known: int8_ptq, int8_qat, prune"),
    ({"methods": ["int8_ptq", "prune"]}, "prune must come first"),
    ({"methods": ["int8_ptq", "int8_qat"]}, "one int8 method"),
    ({"methods": ["int8_qat"], "epochs": 0}, "epochs must be at least 1"),
    ({"methods": ["int8_ptq"], "backend": "tensorrt"}, "backend must be one of"),
    ({"methods": ["int8_ptq"], "backend": "torchao", "per_channel": False}, "per_channel=false"),
    ({"methods": ["prune"], "bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
    ({"methods": ["prune"], "round_to": 0}, r"round_to must be in \[1, inf\] \(1: no rounding\)"),
    ({"methods": ["prune"], "prune_lr_scale": 0}, r"prune_lr_scale must be in \(0, inf\]"),
    ({"methods": ["int8_ptq"], "float_convs": -1}, r"float_convs must be in \[0, inf\] \(0: every convolution int8\)"),
])
def test_bad_requests_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        parse_request(settings)


def test_compression_does_not_apply_to_detectors():
    cfg = compose_config(["recipe=coco", "compress=int8_ptq"])
    with pytest.raises(ValueError, match="does not apply to the detection task"):
        check_compression(cfg)


def test_qat_refuses_loss_terms_on_inner_student_layers():
    cfg = compose_config(TINY_SMOKE + ["compress=int8_qat", "+loss.terms.hint.name=fitnet",
                                       "+loss.terms.hint.student=stage3", "+loss.terms.hint.teacher=layer2"])
    with pytest.raises(ValueError, match="inner layers"):
        check_compression(cfg)


def test_the_engine_refuses_before_any_work(tmp_path, monkeypatch):
    from distill.engine import run as engine_run

    monkeypatch.setattr(engine_run, "build_data_and_task", lambda cfg: pytest.fail("data was built"))
    cfg = compose_config(TINY_SMOKE + [f"cache.dir={tmp_path / 'cache'}", "compress=prune",
                                       "compress.target_mult_adds=1.5"])
    with pytest.raises(ValueError, match="target_mult_adds"):
        engine_run.run(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "run_config.json").exists()


def test_the_command_refuses_before_loading_data(tmp_path, monkeypatch, capsys):
    from distill import compress
    from distill.engine.compression import stage

    monkeypatch.setattr(stage, "build_data_and_task", lambda cfg: pytest.fail("data was loaded"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = OmegaConf.to_container(compose_config(TINY_SMOKE), resolve=True)
    (run_dir / "run_config.json").write_text(json.dumps(config))
    (run_dir / "student.ckpt").write_bytes(b"")
    for arguments, message in [(["method=prune", "target_mult_adds=2"], "target_mult_adds must be in"),
                               (["method=sparsify"], "unknown method 'sparsify'"),
                               ([], "no method given")]:
        with pytest.raises(SystemExit) as exit_info:
            compress.main([str(run_dir), *arguments])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compress.main([str(tmp_path / "elsewhere"), "method=prune"])
    assert "run_config.json not found" in capsys.readouterr().err


# --- end to end --------------------------------------------------------------------------------------------------
FAST_JUDGING = ["compress.latency_runs=2", "compress.throughput_runs=0", "compress.calibration_images=64"]


@pytest.fixture(scope="module")
def ptq_run(tmp_path_factory):
    from distill.engine.run import run

    root = tmp_path_factory.mktemp("compress")
    cfg = compose_config(TINY_SMOKE + [f"cache.dir={root / 'cache'}", "compress=int8_ptq", "latency_runs=2",
                                       "latency_ort=true", *FAST_JUDGING])
    return run(cfg, run_dir=root / "run"), root / "run"


@pytest.mark.slow
def test_int8_ptq_end_to_end_on_the_smoke_recipe(ptq_run):
    results, run_dir = ptq_run
    (entry,) = results["compressed"]
    assert entry["method"] == "int8_ptq" and entry["artifact"] == "student.int8.onnx"
    assert set(entry["metrics"]) >= {"top1", "top5"} and 0 <= entry["metrics"]["top1"] <= 1
    assert entry["mult_adds"] == results["student"]["mult_adds"] and entry["cosine_to_fp32"] > 0.99
    assert 0 < entry["size_ratio"] < 0.5 and entry["file_size_bytes"] == (run_dir / "student.int8.onnx").stat().st_size
    assert all(entry["latency_b1_ms"][key] > 0 for key in ("eager", "ort_fp32", "ort_int8"))
    assert results["student"]["latency_ort_ms"] > 0 and results["teacher"]["latency_ort_ms"] > 0
    assert json.loads((run_dir / "results.json").read_text())["compressed"][0]["method"] == "int8_ptq"
    # the int8 file, judged again here by the same task code, gives what results.json says
    student = load_student(run_dir / "student.ckpt")
    assert student.distill_meta["metrics"]["top1"] == results["student"]["metrics"]["top1"]


@pytest.mark.slow
def test_the_command_prunes_and_quantisation_aware_distils_a_finished_run(ptq_run, capsys):
    from distill import compress

    _, run_dir = ptq_run
    assert compress.main([str(run_dir), "methods=[prune,int8_qat]", "epochs=1", "prune_epochs=1", "tolerance=0.05",
                          *(item.removeprefix("compress.") for item in FAST_JUDGING)]) == 0
    assert "| prune+int8_qat |" in capsys.readouterr().out
    entries = {entry["method"]: entry for entry in json.loads((run_dir / "results.json").read_text())["compressed"]}
    assert set(entries) == {"int8_ptq", "prune", "prune+int8_qat"}  # the engine's entry is kept
    prune, qat = entries["prune"], entries["prune+int8_qat"]
    assert abs(prune["mult_adds_ratio"] - 0.5) <= 0.05 and prune["latency_b1_ms"]["ort_int8"] is None
    pruned = load_student(run_dir / "student.pruned.ckpt")
    assert profile(pruned, (3, 32, 32)).mult_adds == prune["mult_adds"]
    assert pruned.distill_meta["metrics"]["top1"] == prune["metrics"]["top1"]
    assert qat["artifact"] == "student.pruned.qat.int8.onnx" and qat["mult_adds"] == prune["mult_adds"]
    assert "top1" in qat["metrics"] and qat["cosine_to_pt2e"] > 0.99
    assert (run_dir / "compress_int8_qat").is_dir()  # the fine-tuning's own training log


@pytest.mark.slow
def test_a_method_that_fails_is_recorded_and_the_chain_stops(ptq_run, monkeypatch, capsys):
    from distill import compress
    from distill.engine.compression import stage
    from distill.engine.compression.prune import PruningError

    def fail(*args, **kwargs):
        raise PruningError("cannot reach the target")

    monkeypatch.setattr(stage, "prune_to_target", fail)
    _, run_dir = ptq_run
    assert compress.main([str(run_dir), "methods=[prune,int8_ptq]",
                          *(item.removeprefix("compress.") for item in FAST_JUDGING)]) == 1
    assert "**failed**: PruningError: cannot reach the target" in capsys.readouterr().out
    entries = {e["method"]: e for e in json.loads((run_dir / "results.json").read_text())["compressed"]}
    assert entries["prune"]["error"] == "PruningError: cannot reach the target"
    assert "prune+int8_ptq" not in entries and "top1" in entries["int8_ptq"]["metrics"]  # the chain stopped


def test_the_report_shows_compressed_rows(tmp_path):
    from distill.report import collect_runs, report_rows, to_markdown

    entry = {"method": "int8_ptq", "artifact": "student.int8.onnx", "metrics": {"top1": 0.5}, "mult_adds": 3_000_000,
             "params": 800_000, "latency_b1_ms": {"eager": 2.0, "ort_fp32": 1.0, "ort_int8": 0.5}}
    results = {"status": "ok", "recipe": "smoke", "primary_metric": "top1",
               "student": {"name": "mobilenet_v1", "width_multiplier": 0.5, "resolution": 32, "mult_adds": 3_000_000,
                           "params": 800_000, "metrics": {"top1": 0.52}, "latency_ms": 2.1, "latency_ort_ms": 1.1},
               "teacher": {"name": "resnet10t", "resolution": 32, "metrics": {"top1": 0.9}, "latency_ort_ms": None},
               "compressed": [entry, {"method": "prune", "artifact": None, "error": "PruningError: no"}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    rows = report_rows(collect_runs(tmp_path), tmp_path)
    teacher, student, int8, failed = rows
    assert student["latency_ort_ms"] == 1.1 and teacher["latency_ort_ms"] is None
    assert (int8["status"], int8["value"], int8["latency_ms"], int8["latency_ort_ms"]) == ("compressed", 0.5, 2.0, 0.5)
    assert failed["status"].startswith("failed: compress prune: PruningError")
    markdown = to_markdown(rows)
    assert "| mobilenet_v1 [int8_ptq] | 0.5 | 32 | top1 | 50.0% |" in markdown and "| 2.1 | 1.1 |" in markdown
