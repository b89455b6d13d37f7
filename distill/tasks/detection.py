"""Object detection (the coco recipe, Table 13): a detector (SSD or Faster R-CNN, the ``detector`` config group)
built around the student's or the teacher's network as its backbone, trained on its own box losses (the
``ground_truth`` term) plus imitation terms, judged by COCO box mAP@[.5:.95] ("map") and mAP@.5 ("map_50").

Batches are ``(images, targets)`` lists (images of any size, any number of boxes per image). A target with
``labelled`` False is an image the student learns from its teacher only: it has no boxes, so the box losses leave
it out (SSD mines hard negatives per image, three per matched anchor: none; Faster R-CNN, which would take it for
background, computes its proposal and box losses on the batch's labelled images only), and the map imitation
covers the whole image instead of the object cells.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.ssd import SSD

from distill.core.fingerprint import memory_format
from distill.metrics.detection import mean_average_precision
from distill.models.detection.cost import detector_cost
from distill.models.detection.detectors import (
    DETECTOR_KINDS,
    build_detector,
    faster_rcnn_partly_labelled_losses,
)
from distill.models.registry import builder_path
from distill.models.teachers.weights import load_weights_file
from distill.tasks.base import GROUND_TRUTH, StudentStep, Task

__all__ = ["DetectionTask", "evaluate_detector", "TRUNK_OF_BUILDER"]

# Which detector trunk a backbone model config stands for (the student's or the teacher's ``_target_``).
TRUNK_OF_BUILDER = {
    "distill.models.mobilenet.MobileNetV1": "mobilenet_v1",
    "distill.models.teachers.timm_teacher.build_timm_teacher": "resnet",
}


@contextlib.contextmanager
def nhwc_on_cpu(detector: nn.Module, device: torch.device | str = "cpu") -> Iterator[nn.Module]:
    """On a CPU, run the block with the detector's conv weights and its backbone's input NHWC, then restore the
    weights' layout. oneDNN's NHWC convolutions are faster on small maps: Faster R-CNN's box head runs a whole
    trunk stage on 300 region crops of 7x7 per image (``benchmarks/detector_eval.py``). The layout changes only
    the float summation order. Other devices, and weights already NHWC, are left as they are."""
    if torch.device(device).type != "cpu" or memory_format(detector) == "channels_last":
        yield detector
        return
    detector.to(memory_format=torch.channels_last)
    handle = detector.backbone.register_forward_pre_hook(
        lambda _module, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:]))
    try:
        yield detector
    finally:
        handle.remove()
        detector.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def evaluate_detector(detector: nn.Module, loader, class_names: list[str] | None = None,
                      device: torch.device | str = "cpu") -> dict[str, Any]:
    """Run ``detector`` in eval mode over a loader of (images, targets) and score it; adds ``num_images``."""
    was_training = detector.training
    detector.eval().to(device)
    predictions, targets = [], []
    try:
        with nhwc_on_cpu(detector, device):
            for images, batch_targets in loader:
                outputs = detector([image.to(device) for image in images])
                predictions.extend({k: v.cpu() for k, v in output.items()} for output in outputs)
                targets.extend(batch_targets)
    finally:
        detector.train(was_training)
    return {**mean_average_precision(predictions, targets, class_names), "num_images": len(targets)}


@contextlib.contextmanager
def _regions_seen(detector: nn.Module) -> Iterator[dict[str, Any]]:
    """Records the regions a Faster R-CNN's box head is given while the block runs (the sampled proposals in
    training, every proposal in inference), in the detector's input coordinates, with the sizes of the images they
    lie in; nothing for SSD, or when the box head does not run."""
    seen: dict[str, Any] = {}
    if not isinstance(detector, FasterRCNN):
        yield seen
        return

    def record(_module: nn.Module, args: tuple) -> None:
        seen["boxes"] = [boxes.detach() for boxes in args[1]]
        seen["image_sizes"] = [tuple(int(side) for side in size) for size in args[2]]

    handle = detector.roi_heads.box_roi_pool.register_forward_pre_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def _teacher_box_head(teacher: FasterRCNN, features, image_sizes: list[tuple[int, int]],
                      regions: dict[str, Any]) -> None:
    """The teacher's box head on the student's regions (hooks on ``roi_heads.box_predictor`` record the result).
    The boxes are scaled from the student's input size to the teacher's, image by image."""
    rows = regions["rows"]
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    index = torch.tensor(rows, device=next(iter(features.values())).device)
    subset = OrderedDict((name, level[index]) for name, level in features.items())
    sizes = [tuple(int(side) for side in image_sizes[row]) for row in rows]
    boxes = []
    for box, (s_height, s_width), (t_height, t_width) in zip(regions["boxes"], regions["image_sizes"], sizes):
        scale = box.new_tensor([t_width / s_width, t_height / s_height, t_width / s_width, t_height / s_height])
        boxes.append(box * scale)
    crops = teacher.roi_heads.box_roi_pool(subset, boxes, sizes)
    teacher.roi_heads.box_predictor(teacher.roi_heads.box_head(crops))


class DetectionTask(Task):
    """COCO box mAP@[.5:.95] ("map") is the primary metric; "map_50" is mAP at IoU 0.5."""

    name = "detection"
    primary_metric = "map"
    # Teacher backbone maps are large and depend on the flip of each batch: computed live, never cached.
    caches_teacher_outputs = False
    # A torchvision detector (box decoding, NMS) is neither int8-quantised nor pruned by the compress stage.
    compressible = False

    def __init__(self, detector: Mapping[str, Any]) -> None:
        if isinstance(detector, DictConfig):  # plain lists and dicts: the options go into the student checkpoint
            detector = OmegaConf.to_container(detector, resolve=True)
        detector = dict(detector)
        self.kind = str(detector.get("kind"))
        if self.kind not in DETECTOR_KINDS:
            raise ValueError(f"detector.kind must be one of {list(DETECTOR_KINDS)}, got {self.kind!r}")
        self.options = dict(detector.get("options") or {})

    # --- models ---------------------------------------------------------------------------------------------
    def teacher_num_classes(self, datamodule: Any) -> int:
        return datamodule.num_classes

    def student_num_classes(self, datamodule: Any, teacher_output_dim: int) -> int:
        return datamodule.num_classes

    def output_dim(self, model: nn.Module, resolution: int) -> int:
        return int(model.spec["num_classes"])

    def build_model(self, builder: Mapping[str, Any], *, num_classes: int | None, resolution: int,
                    **extra: Any) -> tuple[nn.Module, str, dict[str, Any]]:
        """The configured detector around the network ``builder`` names (MobileNetV1, or a timm ResNet);
        ``weights=<file>`` loads a whole detector's state dict into it."""
        target = builder_path(builder["_target_"])
        if target not in TRUNK_OF_BUILDER:
            raise ValueError(f"a detector backbone must be one of {sorted(TRUNK_OF_BUILDER)}; got _target_={target!r}")
        backbone_kwargs = {k: v for k, v in builder.items() if k not in ("_target_", "name", "dropout")}
        kwargs = {"kind": self.kind, "backbone": TRUNK_OF_BUILDER[target], "num_classes": int(num_classes),
                  "size": int(resolution), "backbone_kwargs": backbone_kwargs, "options": dict(self.options)}
        detector = build_detector(**kwargs)
        if extra.get("weights"):
            load_weights_file(detector, Path(str(extra["weights"])))
        return detector, builder_path(build_detector), kwargs

    def evaluation_key_parts(self) -> dict[str, Any]:
        """What shapes a detector's evaluation: its kind and options (the test-time proposals, score threshold and
        detections per image among them), not the student's schedule, data or imitation weights."""
        return {"kind": self.kind, "options": self.options}

    # --- one batch --------------------------------------------------------------------------------------------
    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def probe_batch(self, student_resolution: int, teacher_resolution: int) -> Any:
        images = [torch.zeros(3, student_resolution, student_resolution) for _ in range(2)]
        targets = [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1])} for _ in range(2)]
        return images, targets

    @staticmethod
    def _targets(batch: Any) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": t["boxes"], "labels": t["labels"]} for t in batch[1]]

    def student_step(self, student: nn.Module, batch: Any, *, with_losses: bool) -> StudentStep:
        images, targets = batch[0], self._targets(batch)
        labelled = [bool(source.get("labelled", True)) for source in batch[1]]
        partly = self.kind == "faster_rcnn" and student.training and not all(labelled)
        with _regions_seen(student) as regions:  # Faster R-CNN: the regions its box head runs on
            if not student.training:  # the shape probe: detections only
                output, losses = student(images), {}
            elif partly:
                output, losses = None, faster_rcnn_partly_labelled_losses(student, images, targets, labelled)
            else:
                output, losses = None, dict(student(images, targets))
        with torch.no_grad(), torch.random.fork_rng():  # the boxes in the detector's input coordinates, for
            prepared, prepared_targets = student.transform(images, [dict(t) for t in targets])  # masked imitation
        height, width = prepared.tensors.shape[-2:]
        whole = torch.tensor([[0.0, 0.0, float(width), float(height)]])  # no boxes known: imitate everywhere
        boxes = [t["boxes"] if known else whole for t, known in zip(prepared_targets, labelled)]
        context = {"boxes": boxes, "image_size": (int(height), int(width))}
        if regions:
            rows = [index for index, known in enumerate(labelled) if known] if partly else list(range(len(images)))
            context["regions"] = {**regions, "rows": rows}
        return StudentStep(output, losses if with_losses else {}, context)

    def teacher_reads_context(self, teacher_layers: Iterable[str]) -> bool:
        """A Faster R-CNN term on the teacher's box head (``roi_heads.*``) needs it run on the regions the student
        sampled; without such a term the teacher's box head is not run at all (it is most of a teacher forward)."""
        return self.kind == "faster_rcnn" and any(layer.startswith("roi_heads.") for layer in teacher_layers)

    def teacher_forward(self, teacher: nn.Module, batch: Any, context: dict | None = None) -> Any:
        """Backbone and head of the teacher on the batch (no box decoding): what imitation terms compare. Given the
        student step's regions (Faster R-CNN), the teacher's box head also runs on them, for box-head imitation."""
        prepared, _ = teacher.transform(batch[0], [dict(t) for t in self._targets(batch)])
        features = teacher.backbone(prepared.tensors)
        maps = list(features.values()) if isinstance(features, dict) else [features]
        head = teacher.head if isinstance(teacher, SSD) else teacher.rpn.head
        output = head(maps)
        regions = (context or {}).get("regions")
        if regions is not None and isinstance(teacher, FasterRCNN):
            _teacher_box_head(teacher, features, prepared.image_sizes, regions)
        return output

    def fit_losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return dict(model(batch[0], self._targets(batch)))

    def check_ground_truth(self, datamodule: Any) -> None:
        """Images without boxes (``data.num_unlabelled``, ``data.unlabelled_ann_file``) are left out of the box
        losses by both detectors, so the box losses need some images with boxes, not boxes on every image."""
        summary = datamodule.summary()
        if not summary["splits"].get("train"):
            raise ValueError(f"loss.terms.{GROUND_TRUTH} (the detector's box losses) needs images with boxes in the "
                             f"student's split, but it holds none (only {summary['unlabelled']} without "
                             f"boxes); give it some (data.num_train, data.ann_file) or remove the term")

    # --- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
        return evaluate_detector(model, datamodule.test_dataloader(), datamodule.class_names, device=device)

    def preprocessing(self, datamodule: Any) -> dict[str, Any]:
        """Detectors resize and normalise images themselves: they take 0..1 RGB tensors of any size."""
        return {"class_names": list(datamodule.class_names)}

    def cost(self, model: nn.Module, resolution: int) -> dict[str, Any]:
        """The detector's network on its input size (box decoding and NMS are not counted)."""
        counted = detector_cost(model, resolution)
        return {"detector": self.kind, "mult_adds": counted.mult_adds, "params": counted.params,
                "total_params": counted.total_params}

    def latency_input(self, datamodule: Any, resolution: int) -> Any:
        """One test image: the whole detector is timed (resize, network, box decoding, NMS)."""
        return [datamodule.test_dataloader().dataset[0][0]]

