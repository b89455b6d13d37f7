"""``python -m distill.data.pack <data overrides...> <out dir>``: a real data set decoded once into LitData shards.

The overrides are the ones a training run is given (``data=image_folder data.root=/data/birds``, also
``data.image_size``, ``data.max_per_class``, ``data.strict``, ``data.fast_decode``; ``data=stanford_dogs``;
``data=geo_csv``, whose places are packed with the photos); the images are decoded and
resized exactly as that run would decode them, one at a time (memory does not grow with the data set), and written
with ``litdata.optimize`` (``distill.data.shards``). Train from them with the same overrides plus
``data.format=litdata data.uri=<out dir>``: the batches, the data's key and so the cached teachers and teacher
outputs are the same as from the files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.utils import get_class, instantiate

from distill.data.modules.fine_grained import ImageFolderDataModule, StanfordDogsDataModule
from distill.data.modules.geo import GeoCSVDataModule
from distill.data.shards import write_pack

__all__ = ["PACKABLE", "main", "pack"]

PACKABLE = (ImageFolderDataModule, StanfordDogsDataModule, GeoCSVDataModule)

log = logging.getLogger(__name__)


def pack(overrides: list[str], out: str | Path, *, workers: int = 1, chunk_bytes: str = "64MB",
         verbose: bool = True) -> Path:
    """Decode the data set the ``overrides`` configure and write its splits as shards under ``out``."""
    with initialize_config_module(config_module="distill.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    target = cfg.data.get("_target_")
    kind = get_class(target) if target else None
    if kind is None or not issubclass(kind, PACKABLE):
        names = ", ".join(packable.__name__ for packable in PACKABLE)
        raise ValueError(f"data._target_={target} cannot be packed; packable data modules: {names} "
                         f"(data=image_folder, data=stanford_dogs, data=geo_csv)")
    datamodule = instantiate(cfg.data, in_memory=False, format="files")  # decoded one image at a time
    datamodule.setup()
    splits = datamodule.pack_splits()
    written = write_pack(out, splits, datamodule.pack_meta, num_workers=workers, chunk_bytes=chunk_bytes,
                         verbose=verbose)
    log.info("packed %s into %s: %s", type(datamodule).__name__, written, {k: len(v) for k, v in splits.items()})
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.data.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="data config overrides, as for a training run")
    parser.add_argument("out", help="an empty (or new) folder for the shards")
    parser.add_argument("--workers", type=int, default=1, help="processes that decode and write (default 1)")
    parser.add_argument("--chunk-bytes", default="64MB", help="size of one shard file (default 64MB)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pack(args.overrides, args.out, workers=args.workers, chunk_bytes=args.chunk_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
