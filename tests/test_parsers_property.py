"""Property-based tests of every text parser of the real-format readers: arbitrary input gives a parsed record or
the project's own error (a ValueError or FileNotFoundError whose message names the file, and the line where the
input has one), never another exception (no IndexError, KeyError, TypeError or UnicodeDecodeError leaking).

Parsers: LFW ``pairs.txt``, CelebA's attribute and partition lists, geolocation CSVs, COCO instances JSON and the
Stanford Dogs ``.mat`` lists. Each gets arbitrary bytes and text, and input shaped like its format with arbitrary
fields, so that the checks deep inside the parser are reached too.
"""

from __future__ import annotations

import itertools
import json
import os
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from distill.data.readers.celeba import CelebAAttributes, read_celeba_attributes, read_celeba_partition
from distill.data.readers.coco import CocoIndex, load_coco
from distill.data.readers.geo_csv import GeoRows, read_geo_csv
from distill.data.readers.pairs import read_lfw_pairs
from distill.data.readers.stanford_dogs import read_split_list

# Modest and reproducible by default (the whole file runs in seconds); DISTILL_HYPOTHESIS_EXAMPLES=2000 searches harder,
# with fresh random examples.
_EXAMPLES = int(os.environ.get("DISTILL_HYPOTHESIS_EXAMPLES", "60"))
FAST = settings(max_examples=_EXAMPLES, deadline=None, derandomize=_EXAMPLES <= 60, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_counter = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parsers")


def _file(folder: Path, name: str, content: bytes | str) -> Path:
    """A fresh file per example (unique name), holding ``content`` (text written as UTF-8)."""
    path = folder / f"{next(_counter)}-{name}"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _parsed_or_own_error(parse, path: Path, record_type):
    """``parse(path)`` returns a ``record_type`` or raises the project's own error naming ``path``."""
    try:
        record = parse(path)
    except (ValueError, FileNotFoundError) as error:
        assert not isinstance(error, UnicodeDecodeError), f"UnicodeDecodeError leaked: {error}"
        assert type(error).__module__.startswith(("builtins", "distill")), f"{type(error).__name__} leaked: {error}"
        assert str(path) in str(error), f"the error does not name the file: {error}"
        return error
    assert isinstance(record, record_type), type(record)
    return record


# --- strategies ---------------------------------------------------------------------------------------------------

FIELD = st.one_of(st.sampled_from(["1", "-1", "0", "2", "10", "x", "٣", "1.5", "", "Abel_Pacheco", "a b", "é"]),
                  st.text(max_size=6))
SEPARATOR = st.sampled_from(["\t", " ", "  ", ",", "\t\t"])
NEWLINE = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])


def _lines(fields=FIELD, min_fields=0, max_fields=6, max_lines=12):
    line = st.tuples(st.lists(fields, min_size=min_fields, max_size=max_fields), SEPARATOR).map(
        lambda item: item[1].join(item[0]))
    return st.tuples(st.lists(line, max_size=max_lines), NEWLINE).map(lambda item: item[1].join(item[0]))


ANY_CONTENT = st.one_of(st.binary(max_size=200), st.text(max_size=200))


def _with_bad_byte(lines: list[str], at: int) -> bytes:
    """UTF-8 ``lines`` with a byte that is not UTF-8 in line ``at`` (0-based)."""
    encoded = [line.encode("utf-8") for line in lines]
    encoded[at] = encoded[at] + b"\xff"
    return b"\n".join(encoded) + b"\n"


BAD_BYTE = st.lists(st.text(alphabet=string.ascii_letters + " \t,0123456789", max_size=10), min_size=1,
                    max_size=8).flatmap(lambda lines: st.tuples(st.just(lines), st.integers(0, len(lines) - 1)))


# --- LFW pairs.txt -----------------------------------------------------------------------------------------------


def _pairs_file():
    """A header and as many pair lines as it announces (mostly), each of 3 or 4 fields (mostly)."""
    name = st.sampled_from(["Abel_Pacheco", "José", "A", "x y"])
    number = st.one_of(st.sampled_from(["1", "2", "13", "0", "-4", "x", "٣", "1.0"]), st.text(max_size=2))

    def body(header):
        folds, per_kind = header
        kinds = [k % (2 * per_kind) < per_kind for k in range(folds * 2 * per_kind)]
        same = st.tuples(name, number, number).map("\t".join)
        different = st.tuples(name, number, name, number).map("\t".join)
        lines = st.tuples(*[same if kind else different for kind in kinds]).map(list)
        noisy = st.lists(st.lists(st.one_of(name, number), max_size=5).map("\t".join), max_size=3)
        return st.tuples(st.sampled_from([f"{folds}\t{per_kind}", f"{per_kind}" if folds == 1 else "x", "1\t0"]),
                         st.one_of(lines, lines.flatmap(lambda good: noisy.map(lambda bad: good + bad)))).map(
            lambda item: "\n".join([item[0], *item[1]]) + "\n")

    return st.tuples(st.integers(1, 3), st.integers(1, 2)).flatmap(body)


@FAST
@given(content=st.one_of(ANY_CONTENT, _lines(), _pairs_file()))
def test_pairs_file(folder, content):
    _parsed_or_own_error(read_lfw_pairs, _file(folder, "pairs.txt", content), list)


# --- CelebA lists -------------------------------------------------------------------------------------------------


def _celeba_attributes():
    """The announced count (mostly right), attribute names (mostly distinct), rows of values (mostly -1 or 1)."""
    names = st.one_of(st.lists(st.sampled_from(["Smiling", "Young", "Male", "é"]), min_size=1, max_size=3,
                               unique=True), st.lists(st.sampled_from(["Smiling", "Young"]), max_size=3))

    def rows(attributes):
        value = st.one_of(st.sampled_from(["1", "-1"]), st.sampled_from(["0", "x", "１", "+1", ""]))
        row = st.tuples(st.sampled_from(["000001.jpg", "000002.jpg", "000003.jpg", "x.jpg"]),
                        st.one_of(st.lists(value, min_size=len(attributes), max_size=len(attributes)),
                                  st.lists(value, max_size=4)))
        return st.tuples(st.just(attributes), st.lists(row, max_size=4))

    def text(item):
        attributes, body = item
        return st.sampled_from([str(len(body)), str(len(body) + 1), "x", ""]).map(
            lambda count: "\n".join([count, " ".join(attributes)] + [" ".join([f, *v]) for f, v in body]) + "\n")

    return names.flatmap(rows).flatmap(text)


@FAST
@given(content=st.one_of(ANY_CONTENT, _lines(), _celeba_attributes()))
def test_celeba_attribute_list(folder, content):
    _parsed_or_own_error(read_celeba_attributes, _file(folder, "list_attr_celeba.txt", content), CelebAAttributes)


@FAST
@given(content=st.one_of(ANY_CONTENT, _lines(fields=st.sampled_from(["000001.jpg", "0", "1", "2", "3", "x"]))))
def test_celeba_partition_list(folder, content):
    _parsed_or_own_error(read_celeba_partition, _file(folder, "list_eval_partition.txt", content), dict)


# --- geolocation CSV -------------------------------------------------------------------------------------------


def _geo_csv():
    header = st.permutations(["path", "lat", "lon", "title"]).map(",".join)
    value = st.one_of(st.sampled_from(["a.png", "/etc/hostname", "48.85", "-95", "200", "nan", "inf", "north",
                                       '"quoted, comma"', '"unclosed', "\x00", ""]), st.text(max_size=5))
    rows = st.lists(st.lists(value, max_size=5).map(",".join), max_size=6)
    return st.tuples(st.one_of(header, st.text(max_size=12)), rows).map(lambda item: "\n".join([item[0], *item[1]]))


@FAST
@given(content=st.one_of(ANY_CONTENT, _geo_csv()), strict=st.booleans())
def test_geo_csv(folder, content, strict):
    _parsed_or_own_error(lambda path: read_geo_csv(path, folder, strict=strict), _file(folder, "train.csv", content),
                         GeoRows)


# --- COCO instances JSON ---------------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats() | st.text(max_size=4),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children,
                                                                                       max_size=3), max_leaves=8)
ODD = st.one_of(st.integers(-2, 0), st.floats(allow_nan=True),
                st.sampled_from([True, 1.5, "1", None, [1], {"id": 1}, 1e308, 2 ** 70]))


def _entry(fields: dict):
    """A dict whose fields are mostly as COCO wants them, sometimes odd or left out; sometimes not a dict at all."""
    mostly = {key: st.one_of(value, value, value, ODD) for key, value in fields.items()}
    return st.one_of(st.fixed_dictionaries(mostly), st.fixed_dictionaries(mostly), st.fixed_dictionaries(mostly),
                     st.fixed_dictionaries({}, optional=mostly), JSON)


def _coco_json():
    small = st.integers(1, 3)
    image = _entry({"id": small, "file_name": st.sampled_from(["a.png", "/etc/hostname", "", "x"]),
                    "width": st.integers(1, 40), "height": st.integers(1, 40)})
    annotation = _entry({"id": small, "image_id": small, "category_id": small, "iscrowd": st.sampled_from([0, 1]),
                         "bbox": st.one_of(st.lists(st.integers(-2, 40), min_size=4, max_size=4),
                                           st.lists(ODD, max_size=5))})
    category = _entry({"id": small, "name": JSON})
    lists = {"images": st.lists(image, max_size=3), "annotations": st.lists(annotation, max_size=3),
             "categories": st.lists(category, min_size=1, max_size=3)}
    complete = st.fixed_dictionaries(lists)  # the three lists, entries mostly right: reaches the checks of each
    document = st.fixed_dictionaries({}, optional={key: st.one_of(value, JSON) for key, value in lists.items()})
    return st.one_of(complete, complete, document, JSON).map(json.dumps)


@FAST
@given(content=st.one_of(ANY_CONTENT, _coco_json()))
def test_coco_json(folder, content):
    _parsed_or_own_error(lambda path: load_coco(path, folder), _file(folder, "instances.json", content), CocoIndex)


# --- Stanford Dogs .mat lists ------------------------------------------------------------------------------------

MAT_VALUE = st.one_of(
    st.lists(st.sampled_from(["n01-a/n01_0.jpg", "", "  ", "b.jpg", "é/x.jpg"]), max_size=4).map(
        lambda names: np.array(names, dtype=object).reshape(-1, 1)),
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 200)), max_size=4).map(
        lambda values: np.array(values, dtype=np.float64).reshape(-1, 1)),
    st.lists(st.text(alphabet="abc/. ", max_size=5), min_size=1, max_size=3).map(np.array),
    st.lists(st.lists(st.sampled_from(["a.jpg", "b"]), max_size=2).map(lambda names: np.array(names, dtype=object)),
             max_size=3).map(lambda cells: np.array(cells + [None], dtype=object)[:-1]),
    st.just(np.zeros((0, 0))), st.just(np.array([[True, False]])),
)


@FAST
@given(fields=st.fixed_dictionaries({}, optional={"file_list": MAT_VALUE, "labels": MAT_VALUE, "other": MAT_VALUE}),
       cut=st.one_of(st.none(), st.integers(0, 400)))
def test_stanford_dogs_list(folder, fields, cut):
    from scipy.io import savemat

    path = folder / f"{next(_counter)}-train_list.mat"
    try:
        savemat(str(path), fields)
    except Exception:  # a structure scipy cannot write as MATLAB: not a .mat a user could have
        assume(False)
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])  # a damaged file
    _parsed_or_own_error(read_split_list, path, list)


@FAST
@given(content=st.binary(max_size=300))
def test_stanford_dogs_list_of_arbitrary_bytes(folder, content):
    _parsed_or_own_error(read_split_list, _file(folder, "test_list.mat", content), list)


# --- the line of bytes that are not UTF-8 ------------------------------------------------------------------------


@FAST
@given(case=BAD_BYTE)
def test_text_that_is_not_utf8_is_named_with_its_line(folder, case):
    lines, at = case
    content = _with_bad_byte(lines, at)
    for name, parse in (("pairs.txt", read_lfw_pairs), ("list_attr_celeba.txt", read_celeba_attributes),
                        ("list_eval_partition.txt", read_celeba_partition),
                        ("train.csv", lambda path: read_geo_csv(path, folder))):
        path = _file(folder, name, content)
        with pytest.raises(ValueError, match="not UTF-8") as raised:
            parse(path)
        assert f"{path}:{at + 1}:" in str(raised.value)
