"""Synthetic data generators: every image a deterministic function of a seed and the settings (numpy only).

- ``shapes``: ten shape classes (the smoke recipe);
- ``dogs``: fine-grained "dog breeds" differing in coat, pattern, ears and muzzle (the dogs recipe);
- ``faces``: people with CelebA's 40 attributes (the facenet and face_attributes recipes);
- ``geo_photos``: geotagged photos whose content follows their place (the planet recipe);
- ``coco_scenes``: detection scenes written as a COCO dataset (the coco recipe).
"""
