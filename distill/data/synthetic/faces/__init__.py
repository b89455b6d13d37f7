"""Synthetic faces with real structure, for the face recipes when no real data set is given.

An identity is a set of stable parameters (face shape, skin tone, eyes, brows, nose, mouth, hair, ears,
marks) plus identity-level attributes (Male, Big_Nose, Bald, ...) and per-image attribute tendencies
(Smiling, Eyeglasses, Wearing_Hat, ...). Each image is a random rendering of its identity: pose, lighting,
background clutter, blur, noise, an occluding patch, and per-image attributes sampled with the identity's
tendencies, using CelebA's 40 attribute names and roughly CelebA's base rates and correlations.

Image ``i`` is a function of (seed, image id, identity parameters, attribute vector) only, so any subset
renders reproducibly and rendering in chunks gives the same bytes as rendering at once. Shapes are drawn
with numpy on coordinate grids (anti-aliased signed distances), restricted to each shape's bounding box,
at about 230 faces of 96x96 per second per core; large sets render in one process per core.

The parts, bottom up:

- ``attributes``: CelebA's 40 attribute names, base rates, which are fixed per person;
- ``draws``: the random streams, and each image's fixed set of uniform draws (pose, light, looks);
- ``identity``: sampling people (``IdentityParams``) and each image's attributes from their tendencies;
- ``sdf`` and ``canvas``: shapes as signed distances, and the canvas that composites them under the pose;
- ``shading``: colour mixing, hair strands, and the final lighting, blur and noise;
- ``layout``: where every part of one rendering goes and its colours;
- ``scene``, ``head``, ``features``, ``accessories``: the drawing of each group of parts;
- ``render``: one image back to front (``_render_one``), and ``render_faces`` over many, in processes;
- ``sets``: ``make_face_set``, ``face_grid`` and the command line.

``python -m distill.data.synthetic.faces --out /tmp/grid.png`` writes a grid (rows = identities,
columns = renderings) to look at.
"""

from distill.data.synthetic.faces.attributes import (ATTRIBUTE_BASE_RATES, ATTRIBUTE_NAMES, IDENTITY_ATTRIBUTES,
                                                     IMAGE_ATTRIBUTES)
from distill.data.synthetic.faces.identity import IdentityParams, sample_identities
from distill.data.synthetic.faces.render import render_faces, sample_attributes
from distill.data.synthetic.faces.sets import SyntheticFaceSet, face_grid, main, make_face_set

__all__ = [
    "ATTRIBUTE_BASE_RATES",
    "ATTRIBUTE_NAMES",
    "IDENTITY_ATTRIBUTES",
    "IMAGE_ATTRIBUTES",
    "IdentityParams",
    "SyntheticFaceSet",
    "face_grid",
    "main",
    "make_face_set",
    "render_faces",
    "sample_attributes",
    "sample_identities",
]
