"""Readers of real data in its published formats: parse the files, check them, name the file and line of a problem.

- ``image_files``: identity / class folders, image listing and safe decoding;
- ``pairs``: LFW's verification pairs (and pairs in its layout over any labelled set);
- ``celeba``: CelebA's attribute and partition lists;
- ``stanford_dogs``: Stanford Dogs' split lists;
- ``geo_csv``: ``path,lat,lon`` CSVs of geotagged photos;
- ``coco``: COCO instances JSON, its Dataset and collate function.
"""
