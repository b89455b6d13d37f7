"""The data layer: what the recipes train and evaluate on. It imports only ``distill.core`` and itself.

- ``synthetic/``: the generators of the default (synthetic) data;
- ``readers/``: readers of real data in its published formats;
- ``modules/``: the LightningDataModules built from them;
- ``views``: the augmentation views and samplers; ``array_store``: built arrays kept on disk; ``align``: face
  alignment and crops; ``geo_cells``: PlaNet's S2-cell partition, the classes of the geolocation data.
"""
