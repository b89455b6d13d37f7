"""Face-verification pairs in the LFW layout: folds of matched ("same") then mismatched pairs.

LFW's ``pairs.txt`` starts with "<folds>\\t<pairs per kind>", then for each fold that many lines
"name\\tn1\\tn2" (two images of one person) followed by as many "name1\\tn1\\tname2\\tn2" (two people);
image n of a person is ``<root>/<name>/<name>_<n:04d>.jpg``. ``make_pairs`` builds the same layout over
sample indices of any labelled set (the synthetic faces), with identities disjoint across folds as in LFW,
so ``distill.metrics.verify_pairs`` can use the ten-fold protocol unchanged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distill.data.readers.text import read_utf8

__all__ = ["lfw_image_path", "make_pairs", "read_lfw_pairs", "write_lfw_pairs"]

NamedImage = tuple[str, int]
NamedPair = tuple[NamedImage, NamedImage, bool]


def _split_identities(identities: np.ndarray, counts: np.ndarray, num_folds: int,
                      rng: np.random.Generator) -> list[np.ndarray]:
    """Deal identities into folds (largest first, each to the fold with fewest images) for balanced folds."""
    order = rng.permutation(len(identities))
    order = order[np.argsort(-counts[order], kind="stable")]
    loads = np.zeros(num_folds, dtype=np.int64)
    members: list[list[int]] = [[] for _ in range(num_folds)]
    for k in order:
        f = int(np.argmin(loads))
        members[f].append(int(identities[k]))
        loads[f] += counts[k]
    return [np.array(m, dtype=np.int64) for m in members]


def _draw_pairs(rng: np.random.Generator, by_identity: dict[int, np.ndarray], pool: np.ndarray, count: int,
                same: bool) -> list[tuple[int, int, bool]]:
    """``count`` pairs of sample indices from identities in ``pool``; repeats only once distinct ones run out."""
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int, bool]] = []
    candidates = pool[[len(by_identity[int(k)]) >= 2 for k in pool]] if same else pool
    attempts = 0
    while len(out) < count:
        if same:
            samples = by_identity[int(rng.choice(candidates))]
            i, j = rng.choice(samples, size=2, replace=False)
        else:
            a, b = rng.choice(candidates, size=2, replace=False)
            i, j = rng.choice(by_identity[int(a)]), rng.choice(by_identity[int(b)])
        key = (min(int(i), int(j)), max(int(i), int(j)))
        attempts += 1
        if key in seen and attempts < 50 * count:
            continue
        seen.add(key)
        out.append((int(i), int(j), same))
    return out


def make_pairs(labels: Sequence[int] | np.ndarray, num_folds: int = 10, pairs_per_fold: int = 300,
               seed: int = 0) -> list[tuple[int, int, bool]]:
    """Verification pairs over sample indices, grouped by fold in order.

    Each fold holds ``pairs_per_fold`` same-identity pairs followed by as many different-identity pairs
    (LFW: 10 x (300 + 300)). Identities are disjoint across folds when there are enough of them (at least
    two per fold, one with two images); otherwise every fold draws from all identities.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if num_folds < 1 or pairs_per_fold < 1:
        raise ValueError(f"num_folds and pairs_per_fold must be >= 1, got {num_folds} and {pairs_per_fold}")
    identities, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(identities) < 2 or counts.max() < 2:
        raise ValueError("labels must name at least two identities and one identity with two or more samples, "
                         f"got {len(identities)} identities with at most {counts.max() if len(counts) else 0} samples")
    by_identity = {int(k): np.flatnonzero(inverse == n) for n, k in enumerate(identities)}
    rng = np.random.default_rng(seed)
    folds = _split_identities(identities, counts, num_folds, rng)
    disjoint = all(len(f) >= 2 and any(len(by_identity[int(k)]) >= 2 for k in f) for f in folds)
    if not disjoint:
        folds = [identities.astype(np.int64)] * num_folds
    pairs: list[tuple[int, int, bool]] = []
    for pool in folds:
        pairs += _draw_pairs(rng, by_identity, pool, pairs_per_fold, same=True)
        pairs += _draw_pairs(rng, by_identity, pool, pairs_per_fold, same=False)
    return pairs


def _parse_int(text: str, path: Path, line_no: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{path}:{line_no}: {what} must be an integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"{path}:{line_no}: {what} must be >= 1, got {value}")
    return value


def read_lfw_pairs(path: str | os.PathLike) -> list[NamedPair]:
    """Read an LFW ``pairs.txt`` (or ``pairsDevTest.txt``, whose header is one number: a single fold).

    Returns ((name1, n1), (name2, n2), issame) in file order: fold by fold, same pairs first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    lines = [(n, line.split()) for n, line in enumerate(read_utf8(path, "pairs file").split("\n"), start=1)]
    lines = [(n, fields) for n, fields in lines if fields]
    if not lines:
        raise ValueError(f"{path}: empty pairs file, expected a header '<folds>\\t<pairs per fold>'")
    header_no, header = lines[0]
    if len(header) == 1:
        num_folds, per_kind = 1, _parse_int(header[0], path, header_no, "pairs per fold")
    elif len(header) == 2:
        num_folds = _parse_int(header[0], path, header_no, "number of folds")
        per_kind = _parse_int(header[1], path, header_no, "pairs per fold")
    else:
        raise ValueError(f"{path}:{header_no}: header must be '<folds>\\t<pairs per fold>', got {len(header)} fields")
    body = lines[1:]
    expected = num_folds * 2 * per_kind
    if len(body) != expected:
        raise ValueError(f"{path}: header says {num_folds} folds x 2 x {per_kind} pairs = {expected} lines, "
                         f"found {len(body)} pair lines")
    pairs: list[NamedPair] = []
    for k, (line_no, fields) in enumerate(body):
        same = (k % (2 * per_kind)) < per_kind
        if same:
            if len(fields) != 3:
                raise ValueError(f"{path}:{line_no}: a same-person line needs 3 fields 'name n1 n2', "
                                 f"got {len(fields)}: {' '.join(fields)!r}")
            name, n1, n2 = fields
            pairs.append(((name, _parse_int(n1, path, line_no, "image number")),
                          (name, _parse_int(n2, path, line_no, "image number")), True))
        else:
            if len(fields) != 4:
                raise ValueError(f"{path}:{line_no}: a different-person line needs 4 fields "
                                 f"'name1 n1 name2 n2', got {len(fields)}: {' '.join(fields)!r}")
            name1, n1, name2, n2 = fields
            pairs.append(((name1, _parse_int(n1, path, line_no, "image number")),
                          (name2, _parse_int(n2, path, line_no, "image number")), False))
    return pairs


def write_lfw_pairs(path: str | os.PathLike, folds: Sequence[Sequence[NamedPair]]) -> Path:
    """Write folds of named pairs as an LFW ``pairs.txt`` (same pairs first in each fold), atomically."""
    path = Path(path)
    if not folds:
        raise ValueError("folds must hold at least one fold")
    per_kind = None
    lines: list[str] = []
    for f, fold in enumerate(folds):
        same = [p for p in fold if p[2]]
        different = [p for p in fold if not p[2]]
        if len(same) != len(different) or not same:
            raise ValueError(f"fold {f}: LFW folds need equal, non-zero numbers of same and different pairs, "
                             f"got {len(same)} and {len(different)}")
        if per_kind is None:
            per_kind = len(same)
        elif len(same) != per_kind:
            raise ValueError(f"fold {f}: every fold must hold {per_kind} pairs of each kind, got {len(same)}")
        for (name1, n1), (name2, n2), issame in same + different:
            for name in (name1, name2):
                if not name or any(c.isspace() for c in name):
                    raise ValueError(f"fold {f}: names must be non-empty without whitespace, got {name!r}")
            for n in (n1, n2):
                if int(n) != n or n < 1:
                    raise ValueError(f"fold {f}: image numbers must be integers >= 1, got {n!r}")
            if issame and name1 != name2:
                raise ValueError(f"fold {f}: a same pair must name one person, got {name1!r} and {name2!r}")
            if not issame and name1 == name2:
                raise ValueError(f"fold {f}: a different pair must name two people, got {name1!r} twice")
            lines.append(f"{name1}\t{int(n1)}\t{int(n2)}" if issame else f"{name1}\t{int(n1)}\t{name2}\t{int(n2)}")
    text = f"{len(folds)}\t{per_kind}\n" + "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def lfw_image_path(root: str | os.PathLike, name: str, n: int, must_exist: bool = True) -> Path:
    """``root/name/name_{n:04d}.jpg``; raises FileNotFoundError naming it when missing (and ``must_exist``)."""
    path = Path(root) / name / f"{name}_{int(n):04d}.jpg"
    if must_exist and not path.is_file():
        raise FileNotFoundError(f"LFW image not found: {path}")
    return path
