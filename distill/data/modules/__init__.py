"""The LightningDataModules the recipes' configs name (``conf/data/*.yaml``).

- ``base``: ``ArrayDataModule`` / ``Split``, named splits of uint8 image arrays that most modules build on;
- ``shapes``, ``fine_grained``, ``faces``, ``attributes``, ``geo``: one module per kind of data, synthetic by
  default and real by option;
- ``coco``: the detection data modules (COCO files, or the synthetic scenes written as such).
"""
