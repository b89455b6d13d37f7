"""A loaded student takes a picture: ``model.preprocess`` repeats the data pipeline's test-image path from the
checkpoint's meta, ``distill.predict`` gives probabilities / embeddings / detections, and the README's example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import distill
from distill.data.readers.image_files import load_image
from distill.data.views import ImageArrayDataset
from distill.models import MobileNetV1
from distill.models.checkpoint import save_student
from distill.models.preprocess import Preprocess, PreprocessError, read_picture

ROOT = Path(__file__).resolve().parents[1]
KWARGS = {"width_multiplier": 0.25, "num_classes": 3}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _photo(path: Path, width: int = 50, height: int = 38, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _student(tmp_path: Path, **meta) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = MobileNetV1(**KWARGS)
    torch.nn.init.normal_(model.fc.weight, std=50.0)  # the fresh head is zero: give it outputs to read
    meta = {"task": "classification", "resolution": 32, "mean": MEAN, "std": STD, "image_size": 40, **meta}
    return save_student(tmp_path / "student.ckpt", model, "distill.models.MobileNetV1", KWARGS, meta=meta)


def test_preprocess_gives_what_the_data_pipeline_gives_a_test_image(tmp_path):
    path = _photo(tmp_path / "photo.png")
    meta = {"resolution": 24, "image_size": 40, "mean": MEAN, "std": STD}
    ours = Preprocess(meta)(path)
    pipeline = ImageArrayDataset(load_image(path, 40)[None], None, 24, augment=False, mean=MEAN, std=STD)[0]["image"]
    assert ours.shape == (1, 3, 24, 24)
    assert torch.allclose(ours[0], pipeline, atol=1e-5)


def test_paths_pil_images_arrays_and_lists_give_one_batch(tmp_path):
    first, second = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.png", 30, 60, seed=1)
    preprocess = Preprocess({"resolution": 16, "mean": MEAN, "std": STD})
    batch = preprocess([first, str(second)])
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    with Image.open(first) as image:
        assert torch.equal(preprocess(image), batch[:1])
        assert torch.equal(preprocess(np.asarray(image.convert("RGB"))), batch[:1])
    assert torch.equal(preprocess((second,)), batch[1:])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the camera was held upright
    path = tmp_path / "upright.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    assert read_picture(path).size == (20, 40)  # portrait, as a viewer shows it


def test_a_detector_gets_zero_to_one_pictures_of_their_own_size(tmp_path):
    path = _photo(tmp_path / "scene.png", 64, 48)
    pictures = Preprocess({"resolution": 64, "class_names": ["cat", "dog"]})([path, path])
    assert isinstance(pictures, list) and len(pictures) == 2
    assert pictures[0].shape == (3, 48, 64) and 0.0 <= float(pictures[0].min()) and float(pictures[0].max()) <= 1.0


def test_a_checkpoint_without_normalisation_says_so(tmp_path):
    with pytest.raises(PreprocessError, match="records no mean, std"):
        Preprocess({"resolution": 32})(_photo(tmp_path / "p.png"))
    with pytest.raises(FileNotFoundError, match="image not found"):
        Preprocess({"resolution": 32, "mean": MEAN, "std": STD})(tmp_path / "gone.jpg")


def test_loaded_student_takes_a_picture_and_predict_reads_its_output(tmp_path):
    model = distill.load_student(_student(tmp_path))
    photo = _photo(tmp_path / "photo.png")
    with torch.no_grad():
        logits = model(model.preprocess(photo))
    probabilities = distill.predict(model, [photo, photo])
    assert probabilities.shape == (2, 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))
    assert torch.allclose(probabilities[0], logits.softmax(dim=1)[0], atol=1e-6)
    embedder = distill.load_student(_student(tmp_path / "embedder", task="embedding"))
    assert torch.allclose(distill.predict(embedder, photo).norm(dim=1), torch.ones(1))
    with pytest.raises(PreprocessError, match="load it with distill.load_student"):
        distill.predict(MobileNetV1(**KWARGS), photo)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "model.preprocess" in block]
    assert len(blocks) == 1, "the README has one example of model.preprocess"
    checkpoint = _student(tmp_path, metrics={"top1": 0.5})
    _photo(tmp_path / "photo.jpg")
    _photo(tmp_path / "another.jpg", 30, 70, seed=2)
    code = re.sub(r'"outputs/[^"]*student\.ckpt"', repr(str(checkpoint)), blocks[0])
    assert str(checkpoint) in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert "torch.Size([1, 3])" in capsys.readouterr().out


def test_the_meta_a_run_writes_reproduces_its_test_images():
    from distill.data.modules.shapes import SyntheticShapesDataModule
    from distill.tasks import ClassificationTask

    datamodule = SyntheticShapesDataModule(num_teacher_train=8, num_train=8, num_test=4, image_size=32, resolution=24)
    meta = {"resolution": 24, **ClassificationTask().preprocessing(datamodule)}
    assert meta["image_size"] == 32 and len(meta["mean"]) == 3
    test = datamodule.dataset("test", augment=False)
    batch = Preprocess(meta)(list(datamodule.split("test").images))
    for i in range(len(test)):
        assert torch.allclose(batch[i], test[i]["image"], atol=1e-5)
