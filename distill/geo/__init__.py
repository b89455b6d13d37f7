"""Geolocation as classification: PlaNet's adaptive S2-cell partition of the earth, and world maps of it.

The maps (``distill.geo.plot``) import matplotlib when called, so using the partition does not.
"""

from distill.geo.partition import FORMAT, MAX_LEVEL, S2Partition, leaf_cell_ids

__all__ = ["FORMAT", "MAX_LEVEL", "S2Partition", "leaf_cell_ids"]
