"""The facenet recipe (MobileNet paper Table 14): composed config, teacher config, labels-only baseline loss,
and one tiny end-to-end run."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, compose_config
from hydra.utils import instantiate

from distill import load_student
from distill.data.modules.faces import SyntheticFacesDataModule
from distill.models import MobileNetV1
from distill.tasks import EmbeddingTask
from distill.tasks.base import predict

TINY_FACENET = TINY["facenet"]


def test_recipe_composes_the_papers_parts():
    cfg = compose_config(["recipe=facenet"])
    assert cfg.recipe_name == "facenet"
    assert cfg.task._target_ == "distill.tasks.EmbeddingTask"
    assert cfg.data._target_ == "distill.data.modules.faces.SyntheticFacesDataModule"
    assert cfg.teacher.builder._target_ == "distill.models.teachers.facenet.build_facenet_teacher"
    assert cfg.teacher.weights is None and cfg.teacher.resolution >= 75  # InceptionResnetV1's smallest input
    assert cfg.student.name == "mobilenet_v1" and cfg.student.width_multiplier == 1.0
    assert dict(cfg.loss.terms) == {"embedding_mse": {"weight": 1.0, "normalize": True}}  # unit embeddings
    assert "ground_truth" not in cfg.loss.terms
    assert (cfg.data.num_folds, cfg.data.pairs_per_fold) == (10, 300)  # LFW: 3000 same + 3000 different pairs
    # the student distils on other people than the teacher's, unlabelled: 600 people x 4 renderings
    assert (cfg.data.num_train_identities, cfg.data.train_images_per_identity) == (600, 4)
    baseline = compose_config(["recipe=facenet", "loss=labels_only", "data.num_train_identities=0",
                               "data.train_images_per_identity=12"])  # the teacher's labelled people
    assert dict(baseline.loss.terms) == {"ground_truth": {"weight": 1.0}}  # no teacher signal leaks into it


def test_face_folder_config_builds_the_real_data_module(tmp_path):
    cfg = compose_config(["recipe=facenet", "data=face_folder", f"data.root={tmp_path}/vggface2",
                          f"data.lfw_root={tmp_path}/lfw", f"cache.dir={tmp_path}/cache"])
    dm = instantiate(cfg.data)
    assert (dm.root, dm.lfw_root, dm.image_size, dm.strict, dm.align) == (
        tmp_path / "vggface2", tmp_path / "lfw", 160, True, False)
    assert dm.cache_dir == f"{tmp_path}/cache"
    with pytest.raises(FileNotFoundError, match="LFW folder not found"):
        dm.setup()


def test_teacher_config_builds_an_embedding_net_and_loads_local_weights(tmp_path):
    cfg = compose_config(["recipe=facenet"])
    teacher = instantiate(cfg.teacher.builder, num_classes=None, weights=None).eval()
    with torch.no_grad():
        out = teacher(torch.randn(2, 3, cfg.teacher.resolution, cfg.teacher.resolution))
    assert out.shape == (2, 512)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    path = tmp_path / "facenet.pt"
    torch.save(teacher.state_dict(), path)
    loaded = instantiate(cfg.teacher.builder, num_classes=None, weights=str(path))
    for (name, a), (_, b) in zip(teacher.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_labels_only_baseline_is_a_normalised_softmax_over_fixed_class_directions():
    dm = SyntheticFacesDataModule(image_size=32, num_identities=3, images_per_identity=2,
                                  train_images_per_identity=2, num_test_identities=4, test_images_per_identity=2,
                                  num_folds=2, pairs_per_fold=1, use_cache=False)
    task = EmbeddingTask(fit_scale=10.0)
    assert task.student_num_classes(dm, 5) == 5 and task.num_train_identities == 3
    directions = task.class_directions(3, 5)
    torch.testing.assert_close(directions @ directions.t(), torch.eye(3))  # orthonormal when classes <= dim
    embedding = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 3.0]])
    target = torch.tensor([1, 2])
    cosines = F.normalize(embedding, dim=1) @ directions.t()
    expected = np.mean([
        -np.log(np.exp(10 * cosines[n, target[n]].item()) / np.exp(10 * cosines[n].numpy()).sum()) for n in range(2)
    ])
    assert task.ground_truth_loss(embedding, target).item() == pytest.approx(expected, rel=1e-5)
    many = task.class_directions(7, 4)  # more classes than dimensions: random unit vectors
    torch.testing.assert_close(many.norm(dim=1), torch.ones(7))
    unlabelled = SyntheticFacesDataModule(image_size=32, num_identities=3, images_per_identity=2,
                                          num_train_identities=2, train_images_per_identity=2, num_test_identities=4,
                                          test_images_per_identity=2, num_folds=2, pairs_per_fold=1, use_cache=False)
    task.student_num_classes(unlabelled, 5)
    with pytest.raises(ValueError, match="labelled training images"):
        task.ground_truth_loss(embedding, target)


@pytest.mark.slow
def test_tiny_facenet_run_end_to_end(tiny_run):
    cfg, results, run_dir = tiny_run("facenet")
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["recipe"] == "facenet" and on_disk["primary_metric"] == "accuracy"
    for role in ("teacher", "student"):
        metrics = on_disk[role]["metrics"]
        for key in ("accuracy", "val", "auc"):
            assert 0.0 <= metrics[key] <= 1.0, (role, key, metrics[key])
    assert on_disk["teacher"]["resolution"] == 80 and on_disk["teacher"]["source"] == "fitted"
    student = on_disk["student"]
    assert (student["name"], student["width_multiplier"], student["resolution"]) == ("mobilenet_v1", 0.25, 64)
    assert on_disk["data"]["splits"] == {"teacher_train": 24, "train": 18, "test": 60}
    assert on_disk["data"]["pairs"] == 80
    model = load_student(on_disk["student_checkpoint"])
    assert isinstance(model, MobileNetV1) and not model.training
    # the imported student gives 512-d embeddings and reproduces the run's verification accuracy
    dm = instantiate(cfg.data)
    dm.setup()
    embeddings, _ = predict(model, dm.eval_dataloader("test", resolution=64))
    assert embeddings.shape == (60, 512)
    pairs = dm.split("test").extras["pairs"]
    from distill.metrics import verify_pairs

    again = verify_pairs(embeddings[pairs[:, 0]], embeddings[pairs[:, 1]], pairs[:, 2].astype(bool))
    assert again["accuracy"] == pytest.approx(student["metrics"]["accuracy"], abs=1e-6)
    assert results["student"]["metrics"]["accuracy"] == student["metrics"]["accuracy"]
