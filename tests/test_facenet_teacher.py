import pickle
from pathlib import PurePosixPath

import pytest
import torch
import torch.nn.functional as F
from facenet_pytorch import InceptionResnetV1

from distill.models.teachers.facenet import (
    FaceNetWithHead,
    build_facenet_teacher,
    find_pretrained_weights,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small CPU forwards run fastest on one thread (and avoid thread contention on shared machines)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fake_vggface2(tmp_path_factory):
    """A weights file with the real layout: a random InceptionResnetV1 with VGGFace2's 8631-way logits."""
    torch.manual_seed(0)
    source = InceptionResnetV1(classify=True, num_classes=8631)
    path = tmp_path_factory.mktemp("weights") / "20180402-114759-vggface2.pt"
    torch.save(source.state_dict(), path)
    return path, source


def _same_weights(model, state, skip_logits=True):
    own = model.state_dict()
    for k, v in state.items():
        if skip_logits and k.startswith("logits."):
            continue
        assert torch.equal(own[k], v), k


def test_loads_identical_weights_and_drops_logits(fake_vggface2):
    path, source = fake_vggface2
    model = build_facenet_teacher(weights=path)
    assert isinstance(model, InceptionResnetV1) and not model.classify
    assert not hasattr(model, "logits")
    _same_weights(model, source.state_dict())


def test_keeps_or_replaces_logits(fake_vggface2):
    path, source = fake_vggface2
    kept = build_facenet_teacher(weights=path, num_classes=8631)
    _same_weights(kept, source.state_dict(), skip_logits=False)
    fresh = build_facenet_teacher(weights=path, num_classes=5)
    assert fresh.logits.weight.shape == (5, 512)
    _same_weights(fresh, source.state_dict())


def test_embedding_is_unit_norm_and_matches_the_source(fake_vggface2):
    path, source = fake_vggface2
    model = build_facenet_teacher(weights=path).eval()
    x = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        emb = model(x)
        source.eval()
        source.classify = False
        try:
            expected = source(x)
        finally:
            source.classify = True
    assert emb.shape == (2, 512)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(emb, expected, atol=1e-6)


def test_wrong_files_raise_value_errors_naming_them(fake_vggface2, tmp_path):
    source = fake_vggface2[1]
    state = source.state_dict()

    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        build_facenet_teacher(weights=text)

    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], a_list)
    with pytest.raises(ValueError, match=r"list\.pt: expected a state dict"):
        build_facenet_teacher(weights=a_list)

    pickled = tmp_path / "object.pt"
    with open(pickled, "wb") as fh:
        pickle.dump({"x": PurePosixPath("arbitrary/object")}, fh, protocol=2)
    with pytest.raises(ValueError, match="object.pt"):  # weights_only refuses arbitrary objects
        build_facenet_teacher(weights=pickled)

    partial = tmp_path / "partial.pt"
    torch.save({k: state[k] for k in list(state)[:3]} | {"head.fc.weight": torch.zeros(2)}, partial)
    with pytest.raises(ValueError, match=r"partial\.pt.*missing keys: .*conv2d_2a.*unexpected keys: head\.fc\.weight"):
        build_facenet_teacher(weights=partial)

    wrong_shape = tmp_path / "shape.pt"
    torch.save(dict(state, **{"last_linear.weight": torch.zeros(512, 100)}), wrong_shape)
    with pytest.raises(ValueError, match=r"shape\.pt.*last_linear\.weight \(512, 100\) != \(512, 1792\)"):
        build_facenet_teacher(weights=wrong_shape)


def test_missing_file_and_training_checkpoint_layouts(fake_vggface2, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        build_facenet_teacher(weights=tmp_path / "absent.pt")
    source = fake_vggface2[1]
    wrapped = tmp_path / "ddp.pt"
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    _same_weights(build_facenet_teacher(weights=wrapped), state)


def test_find_pretrained_weights_in_torch_home(fake_vggface2, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_pretrained_weights("vggface2") is None
    with pytest.raises(FileNotFoundError, match=r"checkpoints/20180402-114759-vggface2\.pt"):
        build_facenet_teacher(weights="pretrained")
    (tmp_path / "checkpoints").mkdir()
    target = tmp_path / "checkpoints" / "20180402-114759-vggface2.pt"
    target.symlink_to(fake_vggface2[0])
    assert find_pretrained_weights("vggface2") == target
    assert find_pretrained_weights("casia-webface") is None
    _same_weights(build_facenet_teacher(weights="pretrained"), fake_vggface2[1].state_dict())
    with pytest.raises(ValueError, match="unknown FaceNet pretrained name"):
        find_pretrained_weights("imagenet")
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "torch" / "checkpoints").mkdir(parents=True)
    casia = tmp_path / "xdg" / "torch" / "checkpoints" / "20180408-102900-casia-webface.pt"
    casia.write_bytes(b"")
    assert find_pretrained_weights("casia-webface") == casia


def test_face_net_with_head_gives_scaled_cosine_logits():
    torch.manual_seed(0)
    net = FaceNetWithHead(num_classes=4, scale=10.0)
    x = torch.randn(2, 3, 80, 80)
    net.eval()
    with torch.no_grad():
        logits = net(x)
        emb = net.embedder(x)
    assert logits.shape == (2, 4)
    w = net.weight.detach()
    expected = 10.0 * (emb / emb.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).t()
    assert torch.allclose(logits, expected, atol=1e-5)
    assert logits.abs().max() <= 10.0 + 1e-5
    assert isinstance(net.embedder, InceptionResnetV1)
    net.train()
    loss = F.cross_entropy(net(x), torch.tensor([0, 3]))
    loss.backward()
    assert net.weight.grad.abs().sum() > 0
    assert net.embedder.conv2d_1a.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_classes"):
        FaceNetWithHead(num_classes=1)
