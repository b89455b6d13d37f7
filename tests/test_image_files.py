import numpy as np
import pytest
from PIL import Image

from distill.data.readers.image_files import CorruptImageError, IdentityFolder, load_image, scan_images


def _save(path, array, fmt="JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(array).save(path, format=fmt, **options)
    return path


def _gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], -1).astype(np.uint8)


@pytest.fixture
def face_root(tmp_path):
    root = tmp_path / "faces"
    _save(root / "Bob" / "Bob_0002.jpg", _gradient())
    _save(root / "Bob" / "Bob_0001.JPG", _gradient())
    _save(root / "Alice" / "Alice_0001.png", _gradient(), fmt="PNG")
    (root / "Alice" / "notes.txt").write_text("not an image")
    (root / "Empty").mkdir()
    _save(root / "stray.jpg", _gradient())  # files directly under root are not an identity
    good = root / "Carol" / "Carol_0001.jpg"
    _save(good, _gradient())
    data = good.read_bytes()
    (root / "Carol" / "Carol_0002.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (root / "Carol" / "Carol_0003.jpg").write_bytes(b"definitely not a jpeg")
    return root


def test_identity_folder_layout(face_root):
    folder = IdentityFolder(face_root)
    assert folder.classes == ["Alice", "Bob", "Carol"]
    assert folder.class_to_idx == {"Alice": 0, "Bob": 1, "Carol": 2}
    names = [(p.name, label) for p, label in folder.samples]
    assert names == [("Alice_0001.png", 0), ("Bob_0001.JPG", 1), ("Bob_0002.jpg", 1),
                     ("Carol_0001.jpg", 2), ("Carol_0002.jpg", 2), ("Carol_0003.jpg", 2)]
    assert np.array_equal(folder.labels, [0, 1, 1, 2, 2, 2])
    assert len(folder) == 6 and folder[1][0].name == "Bob_0001.JPG"
    only_png = IdentityFolder(face_root, extensions=("png",))
    assert only_png.classes == ["Alice"] and len(only_png) == 1


def test_identity_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_root"):
        IdentityFolder(tmp_path / "missing_root")
    (tmp_path / "empty" / "Someone").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        IdentityFolder(tmp_path / "empty")


def test_load_image_crops_and_resizes(face_root):
    full = load_image(face_root / "Alice" / "Alice_0001.png")
    assert full.shape == (40, 60, 3) and full.dtype == np.uint8
    assert np.array_equal(full, _gradient())  # PNG is lossless
    small = load_image(face_root / "Alice" / "Alice_0001.png", size=20)
    assert small.shape == (20, 20, 3)
    # centre crop of a 40x60 image keeps columns 10..49: red runs from ~43 to ~212 across the crop
    assert abs(int(small[10, 0, 0]) - 10 * 255 // 59) < 12
    assert abs(int(small[10, -1, 0]) - 49 * 255 // 59) < 12
    grey = face_root / "grey.jpg"
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(grey)
    assert load_image(grey).shape == (8, 8, 3)


def test_corrupt_images_name_the_file(face_root):
    for name in ("Carol_0002.jpg", "Carol_0003.jpg"):
        with pytest.raises(CorruptImageError, match=name):
            load_image(face_root / "Carol" / name, size=16)
    assert issubclass(CorruptImageError, ValueError)
    with pytest.raises(FileNotFoundError, match="Nobody_0001.jpg"):
        load_image(face_root / "Nobody_0001.jpg")


def test_scan_images_strict_and_lenient(face_root):
    paths = [p for p, _ in IdentityFolder(face_root).samples]
    with pytest.raises(CorruptImageError, match="Carol_0002.jpg"):
        scan_images(paths, strict=True)
    good, bad = scan_images(paths + [face_root / "gone.jpg"], strict=False)
    assert [p.name for p in bad] == ["Carol_0002.jpg", "Carol_0003.jpg", "gone.jpg"]
    assert len(good) == 4
    assert scan_images(good) == (good, [])
