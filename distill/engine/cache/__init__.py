"""Teacher-output cache: the teacher's outputs for every ``(view, index)`` of a dataset, computed once, read back.

- :mod:`~distill.engine.cache.store`: :class:`TeacherOutputCache` (validate, load, get, build, open_or_build,
  build_from_batches, open_or_build_from_batches);
- :mod:`~distill.engine.cache.manifest`: the on-disk format (manifest, checksums, validation);
- :mod:`~distill.engine.cache.writer`: checking batches and filling the arrays;
- :mod:`~distill.engine.cache.lock`: :func:`file_lock`, an exclusive inter-process file lock (usable by anyone);
- :mod:`~distill.engine.cache.files`: fsync and removal helpers.
"""

from distill.engine.cache.lock import file_lock
from distill.engine.cache.manifest import FORMAT_VERSION, MANIFEST_NAME
from distill.engine.cache.store import TeacherOutputCache

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "TeacherOutputCache", "file_lock"]
