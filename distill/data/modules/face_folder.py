"""Real face photographs for the facenet recipe (``data=face_folder``): identity folders to train on, LFW to test on.

The same three splits as the synthetic faces (``distill.data.modules.faces``). Decoding (and aligning) thousands
of photographs takes a while, so the arrays are kept on disk once built, under ``<cache dir>/faces/``, keyed by the
file list with sizes and modification times, or contents with ``verify=content``
(``distill.core.fingerprint.files_fingerprint``). Photographs too many to hold decoded (``in_memory``: ``auto``
below ``distill.data.streaming.IN_MEMORY_AUTO_BYTES``) stream instead: each is decoded, cropped (and cut around
its face, found once: ``distill.data.face_folders``) in the DataLoader workers, to the same pixels.
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.core.fingerprint import files_fingerprint, fingerprint
from distill.data.align import FaceAligner, centre_crop
from distill.data.array_store import config_int, data_cache_dir, load_or_build_arrays
from distill.data.face_folders import FaceBoxCrop, find_faces, fold_pairs, limit_identities
from distill.data.modules.base import ArrayDataModule, Split
from distill.data.readers.image_files import (REPORT_PATHS, SKIP_CORRUPT, CorruptImageError, IdentityFolder, SkipReport,
                                             load_image)
from distill.data.readers.pairs import lfw_image_path, read_lfw_pairs
from distill.data.streaming import (CentreCrop, DecodedFiles, SkipLog, in_memory_setting, keep_in_memory,
                                    readable_headers)

__all__ = ["FaceFolderDataModule"]

log = logging.getLogger(__name__)



class FaceFolderDataModule(ArrayDataModule):
    """Real faces: identity folders (VGGFace2 / CASIA-WebFace layout) to train on, LFW to test on.

    ``root``: one sub-folder per identity (``distill.data.readers.image_files.IdentityFolder``), the ``teacher_train``
    split; ``max_identities`` / ``max_images_per_identity`` / ``min_images_per_identity`` select a subset
    (sorted order, so the choice is reproducible). ``train_root``: the student's images (an identity folder
    too); null: the teacher's images. ``lfw_root``: ``<name>/<name>_<n:04d>.jpg`` files; ``pairs_file``: LFW's
    ``pairs.txt`` (10 folds) or ``pairsDevTest.txt`` (one fold, re-dealt into ``num_folds``); null looks for
    ``pairs.txt`` in ``lfw_root`` and then next to it.

    Images are decoded to ``image_size`` squares: with ``align`` by MTCNN (``distill.data.align``), else
    the central ``crop_fraction`` of the shorter side. ``in_memory``: ``true`` decodes every image at set-up
    (kept on disk for later runs); ``false`` decodes each in the DataLoader workers when a batch needs it (with
    ``align``, MTCNN finds the faces once at set-up and only their boxes are kept); ``auto`` keeps the images in
    memory below ``distill.data.streaming.IN_MEMORY_AUTO_BYTES`` decoded. Both give the same pixels and one key.

    With ``strict`` a corrupt file raises an error naming it; without, it is skipped (test pairs using it are
    dropped). Streamed, a file whose header reads but whose pixels do not is only met in a worker: it is then
    replaced by the next image of the same person that decodes. Faces MTCNN cannot find keep the centre crop.
    All are counted and their paths listed in ``summary()``, which train.py writes to results.json.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        lfw_root: str | os.PathLike | None = None,
        pairs_file: str | os.PathLike | None = None,
        train_root: str | os.PathLike | None = None,
        image_size: int = 160,
        crop_fraction: float = 1.0,
        max_identities: int | None = None,
        max_images_per_identity: int | None = None,
        min_images_per_identity: int = 1,
        num_folds: int = 10,
        strict: bool = True,
        in_memory: str | bool = "auto",
        align: bool = False,
        align_margin: float = 0.2,
        align_min_face_size: int = 20,
        align_device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        if not root:
            raise ValueError("data.root is not set: give the identity-folder data set to train on "
                             "(data.root=/path/to/vggface2/train)")
        if not lfw_root:
            raise ValueError("data.lfw_root is not set: give the LFW image folder (data.lfw_root=/path/to/lfw)")
        self.root = Path(root).expanduser()
        self.lfw_root = Path(lfw_root).expanduser()
        self.pairs_file = Path(pairs_file).expanduser() if pairs_file else None
        self.train_root = Path(train_root).expanduser() if train_root else None
        self.image_size = config_int("image_size", image_size)
        if not 0.0 < float(crop_fraction) <= 1.0:
            raise ValueError(f"data.crop_fraction must be in (0, 1], got {crop_fraction}")
        self.crop_fraction = float(crop_fraction)
        self.max_identities = None if max_identities is None else config_int("max_identities", max_identities, 2)
        self.max_images_per_identity = (None if max_images_per_identity is None
                                        else config_int("max_images_per_identity", max_images_per_identity))
        self.min_images_per_identity = config_int("min_images_per_identity", min_images_per_identity)
        self.num_folds = config_int("num_folds", num_folds)
        self.strict = bool(strict)
        self.in_memory = in_memory_setting(in_memory)
        self.kept_in_memory: bool | None = None
        self.align = bool(align)
        self.align_margin = float(align_margin)
        self.align_min_face_size = int(align_min_face_size)
        # Where MTCNN runs; None: the engine sets the Trainer's device (distill/engine/build.py), else the CPU.
        self.align_device = align_device
        self.cache_dir = cache_dir
        self.use_cache = bool(use_cache)
        self._listing: dict[str, Any] | None = None
        self._report: dict[str, Any] = {}
        self._skips = SkipReport()
        self._pair_folds: int | None = None
        self._aligner: FaceAligner | None = None
        self._digests: dict[tuple[Path, ...], str] = {}
        self._skip_logs: dict[str, SkipLog] = {}  # streamed splits: images replaced in the workers

    def _files_digest(self, paths: Sequence[Path]) -> str:
        """``files_fingerprint(paths, self.verify)``, computed once per file list (a run reads its files once)."""
        key = tuple(paths)
        if key not in self._digests:
            self._digests[key] = files_fingerprint(key, self.verify)
        return self._digests[key]

    # --- which files ------------------------------------------------------------------------------
    def _find_pairs_file(self) -> Path:
        if self.pairs_file is not None:
            if not self.pairs_file.is_file():
                raise FileNotFoundError(f"LFW pairs file not found: {self.pairs_file} (data.pairs_file)")
            return self.pairs_file
        candidates = [self.lfw_root / "pairs.txt", self.lfw_root.parent / "pairs.txt"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"LFW pairs file not found: looked for {candidates[0]} and {candidates[1]}; "
                                f"set data.pairs_file")

    def listing(self) -> dict[str, Any]:
        """The files of every split (read once): paths, labels, identity names and the named test pairs."""
        if self._listing is not None:
            return self._listing
        if not self.lfw_root.is_dir():
            raise FileNotFoundError(f"LFW folder not found (or not a directory): {self.lfw_root} (data.lfw_root)")
        folders = [IdentityFolder(self.root)] + ([IdentityFolder(self.train_root)] if self.train_root else [])
        for folder in folders:
            self._skips.update(folder.skipped)
        teacher = limit_identities(folders[0], self.max_identities, self.max_images_per_identity,
                                   self.min_images_per_identity)
        train = None
        if self.train_root is not None:
            train = limit_identities(folders[1], self.max_identities,
                                     self.max_images_per_identity, self.min_images_per_identity)
        pairs_file = self._find_pairs_file()
        named_pairs = read_lfw_pairs(pairs_file)
        images = sorted({image for first, second, _ in named_pairs for image in (first, second)})
        test_paths = [lfw_image_path(self.lfw_root, name, n) for name, n in images]
        names = sorted({name for name, _ in images})
        self._listing = {
            "teacher_train": teacher, "train": train, "pairs_file": pairs_file, "named_pairs": named_pairs,
            "test": (test_paths, np.array([names.index(name) for name, _ in images], dtype=np.int64), names),
            "test_index": {image: i for i, image in enumerate(images)},
        }
        return self._listing

    @property
    def num_classes(self) -> int:
        return len(self.listing()["teacher_train"][2])

    def _preprocess_parts(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "crop_fraction": self.crop_fraction, "strict": self.strict,
                "align": self.align, "align_margin": self.align_margin if self.align else None,
                "align_min_face_size": self.align_min_face_size if self.align else None,
                "align_device": (self.align_device or "cpu") if self.align else None,
                **({"align_select": "largest_central"} if self.align else {})}

    def fingerprint_parts(self) -> dict[str, Any]:
        listing = self.listing()
        train = listing["train"]
        return {
            "teacher_train": self._files_digest(listing["teacher_train"][0]),
            "train": self._files_digest(train[0]) if train is not None else None,
            "test": self._files_digest(listing["test"][0] + [listing["pairs_file"]]),
            "num_folds": self.num_folds,
            "verify": self.verify,
            **self._preprocess_parts(),
        }

    # --- decoding -----------------------------------------------------------------------------------
    def _face_aligner(self) -> FaceAligner:
        if self._aligner is None:
            self._aligner = FaceAligner(self.image_size, margin=self.align_margin,
                                        min_face_size=self.align_min_face_size, fallback_fraction=self.crop_fraction,
                                        device=self.align_device or "cpu")
        return self._aligner

    def _decode_one(self, path: Path) -> tuple[np.ndarray, int]:
        """(crop, faces MTCNN found: the largest, most central one is kept; 1 without alignment)."""
        image = load_image(path)
        if self.align:
            return self._face_aligner().crop(image)
        return centre_crop(image, self.image_size, self.crop_fraction), 1

    def _decode(self, split: str, paths: Sequence[Path]) -> dict[str, np.ndarray]:
        """Decode (and align) ``paths``; arrays cached on disk keyed by the file list and the settings."""
        def build() -> dict[str, np.ndarray]:
            log.info("Face data: decoding %d images of split '%s'%s", len(paths), split,
                     " with MTCNN alignment" if self.align else "")
            images = np.zeros((len(paths), self.image_size, self.image_size, 3), dtype=np.uint8)
            ok = np.ones(len(paths), dtype=bool)
            faces = np.ones(len(paths), dtype=np.int64)
            for i, path in enumerate(tqdm(paths, desc=f"{split}: {'aligning' if self.align else 'decoding'}",
                                          unit="image", leave=False, disable=None)):
                try:
                    images[i], faces[i] = self._decode_one(path)
                except CorruptImageError:
                    if self.strict:
                        raise
                    ok[i] = False
            return {"images": images, "ok": ok, "found": faces > 0, "faces": faces}

        path = None
        if self.use_cache:
            key = fingerprint(files=self._files_digest(paths), **self._preprocess_parts())
            path = data_cache_dir(self.cache_dir) / "faces" / f"folder-{key}.npz"  # same files: same arrays
        return load_or_build_arrays(path, build, "Face data")

    def _checked(self, split: str, paths: Sequence[Path]) -> dict[str, np.ndarray]:
        """What streaming a split needs before training (no pixels kept): which files are used (``ok``: the header
        reads, or with ``align`` the photo decodes) and, with ``align``, each face's box (``find_faces``: MTCNN once,
        kept on disk like the in-memory arrays). A missing file is an error, as when decoding into memory."""
        absent = next((path for path in paths if not path.is_file()), None)
        if absent is not None:
            raise FileNotFoundError(f"image not found: {absent}")
        if not self.align:
            return {"ok": readable_headers(paths, strict=self.strict), "found": np.ones(len(paths), dtype=bool),
                    "faces": np.ones(len(paths), dtype=np.int64)}

        def build() -> dict[str, np.ndarray]:
            log.info("Face data: finding the faces of %d images of split '%s' with MTCNN", len(paths), split)
            return find_faces(paths, self._face_aligner(), strict=self.strict, what=split)

        path = None
        if self.use_cache:
            key = fingerprint(boxes=True, files=self._files_digest(paths), **self._preprocess_parts())
            path = data_cache_dir(self.cache_dir) / "faces" / f"boxes-{key}.npz"
        return load_or_build_arrays(path, build, "Face data")

    def _images(self, split: str, paths: Sequence[Path], labels: np.ndarray) -> tuple[Any, np.ndarray]:
        """(the split's images, the mask of ``paths`` they keep): decoded into memory, or streamed from the files
        (``DecodedFiles``, each decoded in a worker as the in-memory array decodes it)."""
        if self.kept_in_memory:
            decoded = self._decode(split, paths)
            self._note_problems(split, paths, decoded)
            return decoded["images"][decoded["ok"]], decoded["ok"]
        checked = self._checked(split, paths)
        self._note_problems(split, paths, checked)
        ok = checked["ok"]
        if not ok.any():
            raise ValueError(f"Face data: no image of split '{split}' decodes (first: {paths[0]})")
        decoder = (FaceBoxCrop(self.image_size, checked["boxes"][ok], self.align_margin, self.crop_fraction)
                   if self.align else CentreCrop(self.image_size, self.crop_fraction))
        self._skip_logs[split] = skip_log = SkipLog()
        weakref.finalize(self, skip_log.remove)
        kept = [path for path, good in zip(paths, ok) if good]
        return DecodedFiles(kept, self.image_size, labels=labels[ok], strict=self.strict, decoder=decoder,
                            skip_log=skip_log), ok

    def _note_problems(self, split: str, paths: Sequence[Path], decoded: dict[str, np.ndarray]) -> None:
        bad = [str(paths[i]) for i in np.flatnonzero(~decoded["ok"])]
        for path in bad:
            self._skips.add(SKIP_CORRUPT, path)
        missing = [str(paths[i]) for i in np.flatnonzero(decoded["ok"] & ~decoded["found"])]
        crowded = [str(paths[i]) for i in np.flatnonzero(decoded["ok"] & (decoded.get("faces", 1) > 1))]
        self._report[split] = {"images": len(paths), "corrupt": len(bad), "corrupt_paths": bad[:REPORT_PATHS],
                               "faces_not_found": len(missing), "faces_not_found_paths": missing[:REPORT_PATHS],
                               "multi_face": len(crowded), "multi_face_paths": crowded[:REPORT_PATHS]}
        if crowded:
            log.info("%s: %d of %d images hold several faces; kept the largest, most central one, e.g. %s",
                     split, len(crowded), len(paths), crowded[0])
        if bad:
            warnings.warn(f"{split}: skipped {len(bad)} corrupt image(s) (data.strict=false), e.g. {bad[0]}",
                          RuntimeWarning)
        if missing:
            log.warning("%s: MTCNN found no face in %d of %d images (kept with a centre crop), e.g. %s",
                        split, len(missing), len(paths), missing[0])

    def _labelled_split(self, name: str, files: tuple[list[Path], np.ndarray, list[str]]) -> Split:
        paths, labels, _ = files
        images, ok = self._images(name, paths, labels)
        return Split(images, labels[ok])

    def build_splits(self) -> dict[str, Split]:
        listing = self.listing()
        total = sum(len(listing[name][0]) for name in ("teacher_train", "train", "test") if listing[name] is not None)
        self.kept_in_memory = keep_in_memory(self.in_memory, total, self.image_size)
        splits = {"teacher_train": self._labelled_split("teacher_train", listing["teacher_train"])}
        if listing["train"] is not None:
            splits["train"] = self._labelled_split("train", listing["train"])
        else:
            splits["train"] = splits["teacher_train"]
        test_paths, test_labels, _ = listing["test"]
        test_images, ok = self._images("test", test_paths, test_labels)
        pairs, pair_folds, self._pair_folds, counts = fold_pairs(listing["named_pairs"], listing["test_index"], ok,
                                                                 self.num_folds, listing["pairs_file"])
        self._skips.log(log, f"Face data (data.root={self.root}, data.lfw_root={self.lfw_root})")
        self._report["test"].update(counts)
        extras = {"pairs": pairs, "pair_folds": pair_folds}
        return {**splits, "test": Split(test_images, test_labels[ok], extras=extras)}

    @property
    def num_pair_folds(self) -> int:
        """Folds of the test pairs, in order: the pairs file's folds, or ``data.num_folds`` for a one-fold file
        dealt into folds. The evaluation splits the pairs into this many folds (``distill.tasks.EmbeddingTask``)."""
        self.setup()
        assert self._pair_folds is not None
        return self._pair_folds

    def summary(self) -> dict[str, Any]:
        """Split sizes, identities, the folds of the test pairs, whether the images are in memory, the skipped files
        by reason, and the corrupt images (streamed: also those replaced in the workers so far) and undetected
        faces of each split (results.json)."""
        listing = self.listing()
        self.setup()
        train = listing["train"]
        by_split = {name: dict(report) for name, report in self._report.items()}
        skipped = SkipReport()
        skipped.update(self._skips)
        for name, skip_log in self._skip_logs.items():  # streamed: images replaced in the workers so far
            replaced = [str(path) for path in skip_log.paths()]
            for path in replaced:
                skipped.add(SKIP_CORRUPT, path)
            by_split[name]["corrupt"] += len(replaced)
            by_split[name]["corrupt_paths"] = (by_split[name]["corrupt_paths"] + replaced)[:REPORT_PATHS]
        return {
            **super().summary(),
            "identities": {"teacher_train": len(listing["teacher_train"][2]),
                           "train": len(train[2]) if train is not None else len(listing["teacher_train"][2]),
                           "test": len(listing["test"][2])},
            "pairs_file": str(listing["pairs_file"]),
            "pair_folds": self.num_pair_folds,
            "in_memory": self.kept_in_memory,
            "skipped": skipped.as_dict(),
            "skipped_counts": skipped.counts(),
            "corrupt_images": sum(r["corrupt"] for r in by_split.values()),
            "faces_not_found": sum(r["faces_not_found"] for r in by_split.values()),
            "multi_face_images": {name: r.get("multi_face", 0) for name, r in by_split.items()},
            "by_split": by_split,
        }
