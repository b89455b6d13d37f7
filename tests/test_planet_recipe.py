"""The planet recipe (MobileNet paper Table 11): its configuration, its metrics and one tiny end-to-end run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY, compose_config
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from distill import load_student
from distill.data.geo_cells import S2Partition
from distill.metrics import EARTH_RADIUS_KM, great_circle_km
from distill.paper import PAPER_TABLES
from distill.tasks.geolocation import geolocation_metrics

KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180.0
SCALES = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")

TINY_PLANET = TINY["planet"]


def test_recipe_composes_the_distilled_default_and_the_labels_only_baseline():
    cfg = compose_config(["recipe=planet"])
    assert cfg.recipe_name == "planet"
    assert cfg.task._target_ == "distill.tasks.GeolocationTask"
    assert cfg.data._target_ == "distill.data.modules.geo.SyntheticGeoDataModule"
    assert cfg.teacher.builder.model_name == cfg.teacher.name == "resnet18"
    assert cfg.teacher.resolution == cfg.data.image_size  # one teacher for every student resolution of a sweep
    assert cfg.student.name == "mobilenet_v1"
    assert set(cfg.loss.terms) == {"kd", "ground_truth"} and cfg.loss.terms.ground_truth.weight > 0
    labels_only = compose_config(["recipe=planet", "loss=labels_only"])
    assert labels_only.loss.terms == {"ground_truth": {"weight": 1.0}}
    assert instantiate(cfg.task).primary_metric == "acc_2500km"


def test_real_csv_data_uses_planets_thresholds_and_needs_a_root():
    cfg = compose_config(["recipe=planet", "data=geo_csv"])
    assert cfg.data._target_ == "distill.data.modules.geo.GeoCSVDataModule"
    assert (cfg.data.t1, cfg.data.t2, cfg.data.strict) == (10000, 50, False)
    with pytest.raises(InstantiationException, match="data.root is required"):
        instantiate(cfg.data)


def test_paper_table_11_is_the_reference():
    table = PAPER_TABLES["planet"]
    assert table.rows[(1.0, 224)].metric == pytest.approx(0.793)
    assert table.teacher.label == "PlaNet" and table.teacher.mult_adds_m == 5740


def test_geolocation_metrics_by_hand():
    centres = np.array([[0.0, 0.0], [0.0, 10.0], [45.0, 90.0]])
    truth = np.array([[0.0, 0.005],   # cell 0, 0.556 km from its centre
                      [0.0, 10.1],    # cell 1, 11.1 km
                      [3.0, 10.0],    # cell 1, 333.6 km
                      [0.0, 30.0],    # predicted cell 0: 3336 km
                      [45.0, 95.0]])  # in no cell (target -1), predicted cell 2: 393 km
    logits = torch.tensor([[5.0, 0, 0], [0, 2.0, 1], [0, 3.0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    targets = torch.tensor([0, 1, 1, 2, -1])
    metrics, predicted = geolocation_metrics(logits, targets, centres, truth)
    assert predicted.tolist() == [[0, 0], [0, 10], [0, 10], [0, 0], [45, 90]]
    assert [metrics[key] for key in SCALES] == [0.2, 0.4, 0.4, 0.8, 0.8]
    assert metrics["top1"] == pytest.approx(0.6)
    # distances 0.556, 11.1, 333.6, 393.0 and 3336 km: the median is the 3 degrees of latitude
    assert metrics["median_km"] == pytest.approx(3 * KM_PER_DEGREE, rel=1e-9)
    assert float(great_circle_km(45.0, 95.0, 45.0, 90.0)) == pytest.approx(393.0, abs=0.5)
    with pytest.raises(ValueError, match=r"\(N, 3 cells\)"):
        geolocation_metrics(logits[:, :2], targets, centres, truth)


@pytest.mark.slow
def test_tiny_planet_run_saves_the_partition_with_the_student(tiny_run):
    cfg, results, run_dir = tiny_run("planet")
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["recipe"] == "planet" and saved["primary_metric"] == "acc_2500km"
    for role in ("teacher", "student"):
        metrics = saved[role]["metrics"]
        assert set(metrics) == {*SCALES, "median_km", "top1"}
        values = [metrics[key] for key in SCALES]
        assert values == sorted(values) and 0.0 <= values[0] and values[-1] <= 1.0
        assert all(v * 60 == pytest.approx(round(v * 60), abs=1e-6) for v in values)  # 60 test photos
        assert 0.0 <= metrics["median_km"] <= math.pi * EARTH_RADIUS_KM
    assert saved["artifacts"]["partition"] == "partition.json"
    assert saved["artifacts"]["maps"] == {"cells": "world_cells.png", "errors": "world_errors.png"}
    for name in ("world_cells.png", "world_errors.png"):
        png = run_dir / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000

    # the partition is the data's, on disk and in the checkpoint
    data = instantiate(cfg.data)
    partition = S2Partition.load(run_dir / "partition.json")
    assert partition.tokens == data.partition.tokens and saved["data"]["cells"] == len(partition)
    model = load_student(run_dir / "student.ckpt")
    from_meta = S2Partition.from_dict(model.distill_meta["artifacts"]["partition_data"])
    assert from_meta.tokens == partition.tokens
    assert model.distill_meta["task"] == "geolocation"

    # the loaded student places the test photos as the run measured: recompute its accuracy from scratch
    test = data.split("test")
    with torch.no_grad():
        logits = torch.cat([model(batch["image"]) for batch in data.eval_dataloader("test", resolution=24)])
    assert logits.shape == (60, len(partition))
    places = partition.locations(logits)
    assert np.array_equal(places, partition.centres[logits.argmax(1).numpy()])
    truth = test.extras["latlon"]
    distance = great_circle_km(places[:, 0], places[:, 1], truth[:, 0], truth[:, 1]).numpy()
    for key, km in zip(SCALES, (1, 25, 200, 750, 2500)):
        assert saved["student"]["metrics"][key] == pytest.approx(float((distance <= km).mean()), abs=1e-6)
    assert results["student"]["metrics"]["median_km"] == pytest.approx(float(np.median(distance)), rel=1e-6)
