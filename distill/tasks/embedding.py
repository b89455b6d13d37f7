"""Face embeddings (facenet recipe): the models output embeddings, judged by the LFW pairs protocol.

A teacher without weights is fitted as an identity classifier on its embedding (normalised-softmax head);
the student then only matches the teacher's embeddings, so it needs no labels. The labels-only baseline
(``loss=labels_only``: a student trained on the identities without a teacher) uses the same normalised
softmax against fixed class directions, so it needs no head beyond the student's own last layer.

The test pairs come in folds, in order (LFW's ``pairs.txt``: 10); the data says how many (``num_pair_folds``: the
pairs file's folds, or ``data.num_folds``) and the evaluation uses that count, whatever ``task.n_folds`` says (it
is the count for data that does not say). ``check_data`` checks at set-up, before any training, that every fold
holds same and different pairs, and otherwise stops naming ``data.num_folds`` / ``task.n_folds`` and the counts
that would work.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distill.metrics import check_folds, verify_pairs
from distill.tasks.base import Task, predict

__all__ = ["EmbeddingTask", "EmbeddingClassifier"]

log = logging.getLogger(__name__)


class EmbeddingClassifier(nn.Module):
    """Embedding network + cosine classifier with a fixed scale: trains a usable metric space with plain CE."""

    def __init__(self, embedder: nn.Module, embedding_dim: int, num_classes: int, scale: float = 16.0) -> None:
        super().__init__()
        self.embedder = embedder
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embedding = F.normalize(self.embedder(images), dim=1)
        return self.scale * embedding @ F.normalize(self.weight, dim=1).t()


class EmbeddingTask(Task):
    name = "embedding"
    primary_metric = "accuracy"

    def __init__(self, n_folds: int = 10, far_target: float = 1e-3, flip_sum: bool = False, fit_scale: float = 16.0) -> None:
        self.n_folds = int(n_folds)
        self.far_target = float(far_target)
        self.flip_sum = bool(flip_sum)
        self.fit_scale = float(fit_scale)
        self.num_train_identities: int | None = None  # set by student_num_classes, for ground_truth_loss
        self._class_directions: torch.Tensor | None = None

    def teacher_num_classes(self, datamodule: Any) -> None:
        return None

    def student_num_classes(self, datamodule: Any, teacher_output_dim: int) -> int:
        """The teacher's embedding size; also notes how many identities the student's labels name, if any."""
        targets = datamodule.split("train").targets
        self.num_train_identities = int(targets.max()) + 1 if targets is not None and len(targets) else None
        return teacher_output_dim

    def class_directions(self, num_classes: int, dim: int) -> torch.Tensor:
        """Fixed unit class vectors (num_classes, dim): orthonormal when num_classes <= dim, random otherwise.

        Training the student's embedding towards them with a normalised softmax is identity classification
        with a frozen last layer (Hoffer et al., 2018), as good as a learned one when the layer before is free.
        """
        cached = self._class_directions
        if cached is None or cached.shape != (num_classes, dim):
            generator = torch.Generator().manual_seed(0)
            directions = torch.randn(dim, num_classes, generator=generator, dtype=torch.float64)
            if num_classes <= dim:
                directions = torch.linalg.qr(directions).Q
            cached = F.normalize(directions.t(), dim=1).float()
            self._class_directions = cached
        return cached

    def ground_truth_loss(self, student_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``fit_scale`` x cosine(embedding, fixed class direction): the labels-only baseline."""
        if self.num_train_identities is None:
            raise ValueError("the embedding task's ground-truth loss needs labelled training images "
                             "(the data's 'train' split has no targets)")
        directions = self.class_directions(self.num_train_identities, student_output.shape[1])
        logits = self.fit_scale * F.normalize(student_output, dim=1) @ directions.to(student_output).t()
        return F.cross_entropy(logits, target)

    def teacher_for_fitting(self, teacher: nn.Module, datamodule: Any) -> nn.Module:
        with torch.no_grad():
            was_training = teacher.training
            probe = teacher.eval()(torch.zeros(2, 3, *(datamodule.teacher_resolution or datamodule.resolution,) * 2))
            teacher.train(was_training)
        return EmbeddingClassifier(teacher, probe.shape[1], datamodule.num_classes, scale=self.fit_scale)

    def teacher_from_fitted(self, fitted: nn.Module) -> nn.Module:
        return fitted.embedder

    def fit_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def folds_for(self, datamodule: Any) -> int:
        """The folds the test pairs are evaluated in: the data's (``num_pair_folds``), else ``task.n_folds``."""
        folds = getattr(datamodule, "num_pair_folds", None)
        return int(folds) if folds is not None else self.n_folds

    @staticmethod
    def _pair_folds(datamodule: Any) -> np.ndarray | None:
        """Each test pair's fold where the data gives them (``extras["pair_folds"]``: the pairs file's folds, kept
        when pairs are left out), else None: consecutive folds."""
        return datamodule.split("test").extras.get("pair_folds")

    @staticmethod
    def _test_pairs(datamodule: Any) -> np.ndarray:
        split = datamodule.split("test")
        if "pairs" not in split.extras:
            raise ValueError(f"{type(datamodule).__name__}: the test split has no verification pairs")
        return np.asarray(split.extras["pairs"])

    def check_data(self, datamodule: Any) -> None:
        """At set-up: the test pairs can be scored in the folds the evaluation will use (see the module's doc)."""
        pairs = self._test_pairs(datamodule)
        folds = self.folds_for(datamodule)
        if folds != self.n_folds:
            log.warning("task.n_folds=%d, but the test pairs of %s come in %d folds (data.num_folds=%s): the "
                        "evaluation uses the data's %d folds", self.n_folds, type(datamodule).__name__, folds,
                        getattr(datamodule, "num_folds", "?"), folds)
        issame = pairs[:, 2].astype(bool) if len(pairs) else np.zeros(0, dtype=bool)
        try:
            check_folds(issame, folds, self._pair_folds(datamodule))
        except ValueError as error:
            working = []
            for n in range(2, min(len(issame), 50) + 1):
                try:
                    check_folds(issame, n)
                except ValueError:
                    continue
                working.append(n)
            advice = (f"fold counts these pairs can be scored in: {working}; set data.num_folds and task.n_folds to "
                      f"one of them (data.num_folds deals a one-fold pairs file into folds; a file with several "
                      f"folds keeps its own)" if working else
                      "no fold count works: every fold needs a same and a different pair; use more test pairs")
            raise ValueError(f"{type(datamodule).__name__}: the {len(issame)} test pairs cannot be evaluated in "
                             f"{folds} folds (the data's folds; task.n_folds={self.n_folds}): {error}. "
                             f"{advice}") from error

    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
        pairs = self._test_pairs(datamodule)
        loader = datamodule.eval_dataloader("test", resolution=resolution)
        embeddings, _ = predict(model, loader, device=device)
        if self.flip_sum:
            flipped = _FlipWrapper(model)
            embeddings = F.normalize(embeddings, dim=1) + F.normalize(predict(flipped, loader, device=device)[0], dim=1)
        first, second, issame = pairs[:, 0], pairs[:, 1], pairs[:, 2].astype(bool)
        return verify_pairs(embeddings[first], embeddings[second], issame, n_folds=self.folds_for(datamodule),
                            far_target=self.far_target, fold_of=self._pair_folds(datamodule))


class _FlipWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.flip(-1))
