"""The LightningDataModules the recipes' configs name (``conf/data/*.yaml``).

- ``base``: ``ArrayDataModule`` / ``Split``, named splits of uint8 image arrays that most modules build on;
- ``shapes``, ``fine_grained``, ``geo``: one module per kind of data, synthetic by default and real by option;
- ``faces`` (synthetic) and ``face_folder`` (identity folders and LFW): the facenet recipe's data;
- ``attributes`` (the shared base and the synthetic faces) and ``celeba``: the face_attributes recipe's data;
- ``coco``: the detection data modules (COCO files, or the synthetic scenes written as such).
"""
