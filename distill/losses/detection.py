"""What a detection student imitates of a frozen teacher: its backbone maps and its head outputs.

Registered as the loss terms ``feature_imitation`` (student/teacher layer: the detector's ``backbone``) and
``head_imitation`` (layer ``head`` for SSD, ``rpn.head`` for Faster R-CNN), weighted in ``loss.terms`` like any other.

- ``FeatureImitation`` (FitNet, Romero et al. 2015, applied to detectors as in Chen et al. 2017): 1x1 conv adapters
  map the student's backbone maps to the teacher's channels; squared difference averaged over channels and cells,
  or, with ``mask=True``, over the cells that overlap an object box only (the object regions, Wang et al. 2019).
- ``ssd_head_imitation`` / ``rpn_head_imitation`` (Chen et al. 2017's soft targets): on the anchors both detectors
  share, the student's class distribution is pulled to the teacher's (KL divergence at a temperature; RPN: binary
  objectness), and its box offsets to the teacher's, weighted by how sure the teacher is that an object is there.
- ``box_head_imitation`` (Chen et al. 2017's soft targets for the second stage; term ``box_head_imitation``, layer
  ``roi_heads.box_predictor``): Faster R-CNN's box head scores regions, not anchors, so the teacher's box head is
  run on the regions the student sampled this step (the detection task hands them over); the student's class
  distribution on each region is pulled to the teacher's, and its per-class box offsets to the teacher's, weighted
  by the teacher's probability of that class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.registry import DistillationLoss, register_loss

__all__ = ["object_mask", "FeatureImitation", "ssd_head_imitation", "rpn_head_imitation", "box_head_imitation",
           "FeatureImitationLoss", "HeadImitationLoss", "BoxHeadImitationLoss", "feature_maps"]


def feature_maps(output) -> list[torch.Tensor]:
    """A detector backbone's output as a list of maps (a dict of maps, a list, or one map)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return list(output.values())
    return list(output)


def object_mask(boxes: list[torch.Tensor], map_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) float mask: 1 where a map cell (covering image_size / map_size pixels) overlaps an xyxy box."""
    (h, w), (height, width) = map_size, image_size
    sy, sx = height / h, width / w
    top = torch.arange(h, dtype=torch.float32) * sy
    left = torch.arange(w, dtype=torch.float32) * sx
    masks = []
    for image_boxes in boxes:
        b = image_boxes.detach().float().cpu().reshape(-1, 4)
        rows = (top[None, :] < b[:, 3:4]) & (top[None, :] + sy > b[:, 1:2])     # (N, h)
        cols = (left[None, :] < b[:, 2:3]) & (left[None, :] + sx > b[:, 0:1])   # (N, w)
        masks.append((rows[:, :, None] & cols[:, None, :]).any(0).float() if len(b) else torch.zeros(h, w))
    return torch.stack(masks)


class FeatureImitation(nn.Module):
    """Squared difference of adapted student maps and teacher maps, mean over levels (one adapter per level)."""

    def __init__(self, student_channels: list[int], teacher_channels: list[int], mask: bool = False):
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(f"student backbone gives {len(student_channels)} maps, the teacher's "
                             f"{len(teacher_channels)}; feature imitation pairs them one to one")
        self.adapters = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_channels, teacher_channels))
        self.mask = bool(mask)

    def forward(self, student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor],
                boxes: list[torch.Tensor] | None = None, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        if self.mask and (boxes is None or image_size is None):
            raise ValueError("the masked imitation loss needs the boxes and the (padded) input image size")
        losses = []
        for adapter, student, teacher in zip(self.adapters, student_maps, teacher_maps):
            student = adapter(student)
            teacher = teacher.detach()
            if teacher.shape[-2:] != student.shape[-2:]:
                teacher = F.adaptive_avg_pool2d(teacher, student.shape[-2:])
            squared = (student - teacher).pow(2).mean(1)   # (B, h, w)
            if self.mask:
                weights = object_mask(boxes, tuple(student.shape[-2:]), image_size).to(squared)
                losses.append((squared * weights).sum() / weights.sum().clamp_min(1.0))
            else:
                losses.append(squared.mean())
        return torch.stack(losses).mean()


def _check_same_anchors(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"student {what} {tuple(student.shape)} and teacher {what} {tuple(teacher.shape)} differ: "
                         f"head imitation needs the same anchors (same detector kind, input size and options)")


def _weighted_box_loss(student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between box offsets (..., 4), weighted per anchor, normalised by the total weight."""
    per_anchor = F.smooth_l1_loss(student, teacher, reduction="none", beta=1.0 / 9).sum(-1)
    return (per_anchor * weight).sum() / weight.sum().clamp_min(1e-6)


def _class_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL divergence from the teacher's class distribution to the student's at a temperature, per row (last dim)."""
    t_prob = F.softmax(t_logits / temperature, dim=-1)
    return (t_prob * (torch.log(t_prob.clamp_min(1e-12)) - F.log_softmax(s_logits / temperature, dim=-1))).sum(-1)


def _check_normalize(normalize: str) -> str:
    if normalize not in ("objects", "anchors"):
        raise ValueError(f"head_imitation normalize={normalize!r}: expected 'objects' (the KD's sum over the anchors "
                         "divided by the teacher's object anchors) or 'anchors' (its mean)")
    return normalize


def ssd_head_imitation(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                       temperature: float = 1.0, normalize: str = "objects") -> torch.Tensor:
    """SSD outputs {"cls_logits" (N, A, C), "bbox_regression" (N, A, 4)}: KD on every anchor plus teacher-weighted
    box offsets (weight: the teacher's probability that the anchor holds an object, i.e. not class 0).

    ``normalize="anchors"`` averages the KD over all anchors; ``"objects"`` divides its sum by the teacher's expected
    number of object anchors, as SSD's own loss divides by its matched anchors, so that the few anchors on objects
    are not drowned by thousands of background ones."""
    s_logits, t_logits = student["cls_logits"], teacher["cls_logits"].detach()
    _check_same_anchors(s_logits, t_logits, "class logits")
    kd = _class_kl(s_logits, t_logits, temperature)
    foreground = 1.0 - F.softmax(t_logits, dim=-1)[..., 0]
    box = _weighted_box_loss(student["bbox_regression"], teacher["bbox_regression"].detach(), foreground)
    if _check_normalize(normalize) == "objects":
        kd = kd.sum() / foreground.sum().clamp_min(1.0)
    else:
        kd = kd.mean()
    return kd * temperature ** 2 + box


def rpn_head_imitation(student: tuple[list[torch.Tensor], list[torch.Tensor]],
                       teacher: tuple[list[torch.Tensor], list[torch.Tensor]], temperature: float = 1.0) -> torch.Tensor:
    """RPN head outputs (objectness [(N, A, H, W)], deltas [(N, 4A, H, W)]) per level: binary KD on objectness plus
    box deltas weighted by the teacher's objectness."""
    losses = []
    for s_obj, t_obj, s_box, t_box in zip(student[0], teacher[0], student[1], teacher[1]):
        _check_same_anchors(s_obj, t_obj, "objectness")
        t_prob = torch.sigmoid(t_obj.detach() / temperature)
        kd = F.binary_cross_entropy_with_logits(s_obj / temperature, t_prob) * temperature ** 2
        n, a, h, w = s_obj.shape
        s_box = s_box.reshape(n, a, 4, h, w).movedim(2, -1)
        t_box = t_box.detach().reshape(n, a, 4, h, w).movedim(2, -1)
        losses.append(kd + _weighted_box_loss(s_box, t_box, torch.sigmoid(t_obj.detach())))
    return torch.stack(losses).mean()


def box_head_imitation(student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor],
                       temperature: float = 1.0) -> torch.Tensor:
    """Box head outputs on the same R regions, (class logits (R, C), per-class box offsets (R, 4C)): KD on every
    region's class distribution (mean over the regions) plus the offsets of each object class, weighted by the
    teacher's probability of that class and normalised by the weights' sum."""
    s_logits, s_box = student
    t_logits, t_box = (value.detach() for value in teacher)
    _check_same_anchors(s_logits, t_logits, "region class logits")
    _check_same_anchors(s_box, t_box, "region box offsets")
    if not len(s_logits):
        return s_logits.sum() * 0.0
    kd = _class_kl(s_logits, t_logits, temperature)
    regions, classes = t_logits.shape
    weight = F.softmax(t_logits, dim=-1)[:, 1:]  # class 0 is the background: it has no box
    s_box = s_box.reshape(regions, classes, 4)[:, 1:]
    t_box = t_box.reshape(regions, classes, 4)[:, 1:]
    return kd.mean() * temperature ** 2 + _weighted_box_loss(s_box, t_box, weight)


@register_loss("feature_imitation")
class FeatureImitationLoss(DistillationLoss):
    """FitNet-style imitation of every backbone map (one 1x1 adapter per level), optionally masked to the objects.

    ``mask=True`` needs the batch context (boxes in input coordinates and the padded input size), which the
    detection task provides.
    """

    kind = "features"
    same_shape = False
    structured = True
    uses_context = True

    def __init__(self, mask: bool = False) -> None:
        super().__init__()
        self.mask = bool(mask)
        self.imitation: FeatureImitation | None = None

    def setup(self, student_feature, teacher_feature) -> None:
        student_maps, teacher_maps = feature_maps(student_feature), feature_maps(teacher_feature)
        self.imitation = FeatureImitation([m.shape[1] for m in student_maps], [m.shape[1] for m in teacher_maps],
                                          mask=self.mask)

    def forward(self, student, teacher, context: dict | None = None) -> torch.Tensor:
        if self.imitation is None:
            raise RuntimeError("FeatureImitationLoss.setup() was not called with probe features")
        context = context or {}
        return self.imitation(feature_maps(student), feature_maps(teacher), context.get("boxes"),
                              context.get("image_size"))


@register_loss("head_imitation")
class HeadImitationLoss(DistillationLoss):
    """Soft targets of the teacher's head on the anchors both detectors share (SSD box predictor or RPN head)."""

    kind = "features"
    same_shape = False
    structured = True

    def __init__(self, temperature: float = 1.0, normalize: str = "objects") -> None:
        super().__init__()
        self.temperature = self._check_hyperparameter("temperature", temperature)
        self.normalize = _check_normalize(normalize)  # refused when the loss is built, not at its first step

    def forward(self, student, teacher) -> torch.Tensor:
        if isinstance(student, dict):
            return ssd_head_imitation(student, teacher, self.temperature, self.normalize)
        if isinstance(student, (tuple, list)) and len(student) == 2:
            return rpn_head_imitation(student, teacher, self.temperature)
        raise ValueError("head_imitation compares an SSD head's {'cls_logits', 'bbox_regression'} or an RPN head's "
                         f"(objectness, deltas); got a {type(student).__name__} - point the term's student/teacher "
                         "at the detector's head layer ('head' for SSD, 'rpn.head' for Faster R-CNN)")


@register_loss("box_head_imitation")
class BoxHeadImitationLoss(DistillationLoss):
    """Soft targets of a Faster R-CNN teacher's box head on the regions its student sampled (``box_head_imitation``);
    layer ``roi_heads.box_predictor`` of both detectors."""

    kind = "features"
    same_shape = False
    structured = True
    optional_per_batch = True  # the box head runs on labelled images only: a batch without one has no regions

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = self._check_hyperparameter("temperature", temperature)

    def forward(self, student, teacher) -> torch.Tensor:
        if not (isinstance(student, (tuple, list)) and len(student) == 2 and isinstance(teacher, (tuple, list))
                and len(teacher) == 2):
            raise ValueError("box_head_imitation compares a Faster R-CNN box predictor's (class logits, box offsets) "
                             f"on the same regions; got a {type(student).__name__} - point the term's student/teacher "
                             "at 'roi_heads.box_predictor' (Faster R-CNN only)")
        return box_head_imitation(student, teacher, self.temperature)
