"""The FaceNet teacher: facenet-pytorch's InceptionResnetV1 (512-d unit embedding), never downloaded.

Pretrained weights are opt-in local files, the ones facenet-pytorch itself caches under
``$TORCH_HOME/checkpoints`` (``20180402-114759-vggface2.pt``, ``20180408-102900-casia-webface.pt``); they
hold a state dict including the ``logits`` layer of the training identities (8631 or 10575). Without
weights, ``FaceNetWithHead`` puts a cosine classifier on the embedding so plain cross-entropy fits the
network to the synthetic identities.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from facenet_pytorch import InceptionResnetV1
from torch import nn

from distill.models.registry import register_builder

__all__ = [
    "EMBEDDING_DIM",
    "PRETRAINED_FILES",
    "FaceNetWithHead",
    "build_facenet_teacher",
    "find_pretrained_weights",
    "torch_home",
]

EMBEDDING_DIM = 512
# name -> (file name facenet-pytorch caches, number of training identities in its logits layer)
PRETRAINED_FILES: dict[str, tuple[str, int]] = {
    "vggface2": ("20180402-114759-vggface2.pt", 8631),
    "casia-webface": ("20180408-102900-casia-webface.pt", 10575),
}


def torch_home() -> Path:
    """Torch's cache folder, resolved the way facenet-pytorch does: $TORCH_HOME, else $XDG_CACHE_HOME/torch."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def _pretrained_file(name: str) -> Path:
    if name not in PRETRAINED_FILES:
        raise ValueError(f"unknown FaceNet pretrained name {name!r}; known: {sorted(PRETRAINED_FILES)}")
    return torch_home() / "checkpoints" / PRETRAINED_FILES[name][0]


def find_pretrained_weights(name: str = "vggface2") -> Path | None:
    """The locally cached facenet-pytorch weights file for ``name``, or None; never downloads."""
    path = _pretrained_file(name)
    return path if path.is_file() else None


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on foreign files (pickle, zip, index errors)
        raise ValueError(f"{path}: not a readable torch weights file ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # a training checkpoint
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _check_keys(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{label}: {', '.join(keys[:5])}{more}")
    if problems:
        raise ValueError(f"{path}: not an InceptionResnetV1 state dict; " + "; ".join(problems))


@register_builder
def build_facenet_teacher(weights: str | os.PathLike | None = None, num_classes: int | None = None,
                          pretrained_name: str = "vggface2", dropout_prob: float = 0.6) -> InceptionResnetV1:
    """InceptionResnetV1 whose forward gives the 512-d L2-normalised embedding (``classify=False``).

    ``weights``: None (random initialisation), a path to a facenet-pytorch state dict file, or
    ``"pretrained"`` for the cached file of ``pretrained_name`` (see ``find_pretrained_weights``).
    ``num_classes``: None drops the file's ``logits`` layer; an int keeps a ``logits`` layer of that size,
    loaded from the file when the shapes agree and freshly initialised otherwise.
    """
    if num_classes is not None and int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
    if weights is not None and str(weights) == "pretrained":
        path = _pretrained_file(pretrained_name)
        if not path.is_file():
            raise FileNotFoundError(
                f"FaceNet weights {pretrained_name!r} not found at {path}; place facenet-pytorch's "
                f"{PRETRAINED_FILES[pretrained_name][0]} there or pass its path (nothing is downloaded)")
        weights = path
    model = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout_prob)
    if num_classes is not None:
        model.logits = nn.Linear(EMBEDDING_DIM, int(num_classes))
        model.num_classes = int(num_classes)
    if weights is None:
        return model
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"FaceNet weights file not found: {path}")
    state = _load_state_dict(path)
    own = model.state_dict()
    logits = {k: v for k, v in state.items() if k.startswith("logits.")}
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    if num_classes is not None:
        if all(k in logits and logits[k].shape == own[k].shape for k in ("logits.weight", "logits.bias")):
            state.update(logits)
        else:
            state.update({k: own[k] for k in ("logits.weight", "logits.bias")})
    _check_keys(model, state, path)
    for k, v in own.items():  # files converted from TensorFlow may lack BatchNorm's counters
        state.setdefault(k, v)
    model.load_state_dict(state, strict=True)
    return model


class FaceNetWithHead(nn.Module):
    """InceptionResnetV1 embedding + a cosine identity classifier (normalised softmax, NormFace).

    ``forward`` returns ``scale * cos(embedding, class weight)`` logits for cross-entropy; ``embedder`` is the
    embedding network to keep as the teacher afterwards.
    """

    def __init__(self, num_classes: int, embedder: nn.Module | None = None, scale: float = 16.0) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.embedder = embedder if embedder is not None else build_facenet_teacher()
        self.weight = nn.Parameter(torch.randn(int(num_classes), EMBEDDING_DIM) / EMBEDDING_DIM ** 0.5)
        self.scale = float(scale)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedder(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.embed(x) @ F.normalize(self.weight, dim=1).t()
