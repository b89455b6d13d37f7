import numpy as np
import pytest

from distill.data.readers.pairs import lfw_image_path, make_pairs, read_lfw_pairs, write_lfw_pairs


def _labels(num_identities=40, per_identity=5):
    return np.repeat(np.arange(num_identities), per_identity)


def test_make_pairs_fold_layout_and_balance():
    labels = _labels()
    pairs = make_pairs(labels, num_folds=10, pairs_per_fold=6, seed=0)
    assert len(pairs) == 10 * 12
    for f in range(10):
        fold = pairs[f * 12:(f + 1) * 12]
        assert [p[2] for p in fold] == [True] * 6 + [False] * 6
        for i, j, same in fold:
            assert i != j
            assert (labels[i] == labels[j]) == same
        # no pair repeats inside a fold while distinct ones are available
        assert len({(min(i, j), max(i, j)) for i, j, _ in fold}) == 12


def test_make_pairs_identities_disjoint_across_folds():
    labels = _labels()
    pairs = make_pairs(labels, num_folds=10, pairs_per_fold=6, seed=1)
    fold_ids = [set(labels[[i for p in pairs[f * 12:(f + 1) * 12] for i in p[:2]]]) for f in range(10)]
    for a in range(10):
        for b in range(a + 1, 10):
            assert not fold_ids[a] & fold_ids[b]


def test_make_pairs_deterministic_and_seeded():
    labels = _labels(20, 4)
    assert make_pairs(labels, 2, 10, seed=3) == make_pairs(labels, 2, 10, seed=3)
    assert make_pairs(labels, 2, 10, seed=3) != make_pairs(labels, 2, 10, seed=4)


def test_make_pairs_falls_back_to_shared_identities_when_too_few():
    labels = _labels(3, 4)  # 3 identities cannot be split into 10 folds of at least 2
    pairs = make_pairs(labels, num_folds=10, pairs_per_fold=4, seed=0)
    assert len(pairs) == 80
    assert all((labels[i] == labels[j]) == same for i, j, same in pairs)


def test_make_pairs_rejects_unusable_labels():
    with pytest.raises(ValueError, match="two identities"):
        make_pairs(np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="two or more samples"):
        make_pairs(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="1-D integer"):
        make_pairs(np.array([[0, 1]]))


def _named_folds(pairs, labels, per_fold):
    """Map sample indices to LFW names: person k -> Person_k, images numbered from 1 within a person."""
    number = np.zeros(len(labels), dtype=int)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        number[idx] = np.arange(1, len(idx) + 1)
    named = [((f"Person_{labels[i]}", int(number[i])), (f"Person_{labels[j]}", int(number[j])), same)
             for i, j, same in pairs]
    return [named[f:f + 2 * per_fold] for f in range(0, len(named), 2 * per_fold)]


def test_write_then_read_round_trip(tmp_path):
    labels = _labels(30, 3)
    folds = _named_folds(make_pairs(labels, num_folds=3, pairs_per_fold=4, seed=0), labels, 4)
    path = write_lfw_pairs(tmp_path / "pairs.txt", folds)
    lines = path.read_text().splitlines()
    assert lines[0] == "3\t4"
    assert len(lines) == 1 + 3 * 8
    assert len(lines[1].split("\t")) == 3 and len(lines[5].split("\t")) == 4
    assert read_lfw_pairs(path) == [p for fold in folds for p in fold]
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.txt"]  # no temporary left behind


def test_read_lfw_format_by_hand(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("1\t2\nAbel_Pacheco\t1\t4\nAkhmed_Zakayev\t1\t3\n"
                    "Abdel_Madi_Shabneh\t1\tDean_Barker\t1\nAbdel_Madi_Shabneh\t1\tGiancarlo_Fisichella\t1\n")
    assert read_lfw_pairs(path) == [
        (("Abel_Pacheco", 1), ("Abel_Pacheco", 4), True),
        (("Akhmed_Zakayev", 1), ("Akhmed_Zakayev", 3), True),
        (("Abdel_Madi_Shabneh", 1), ("Dean_Barker", 1), False),
        (("Abdel_Madi_Shabneh", 1), ("Giancarlo_Fisichella", 1), False),
    ]
    dev = tmp_path / "pairsDevTest.txt"  # one-number header: a single fold
    dev.write_text("1\nA\t1\t2\nA\t1\tB\t1\n")
    assert read_lfw_pairs(dev) == [(("A", 1), ("A", 2), True), (("A", 1), ("B", 1), False)]


@pytest.mark.parametrize("text, message", [
    ("1\t2\nA\t1\t2\nB\t1\nA\t1\tB\t1\nA\t2\tC\t1\n", r"pairs\.txt:3: a same-person line needs 3 fields"),
    ("1\t1\nA\t1\t2\nA\t1\tB\n", r"pairs\.txt:3: a different-person line needs 4 fields"),
    ("1\t1\nA\t1\tx\nA\t1\tB\t1\n", r"pairs\.txt:2: image number must be an integer, got 'x'"),
    ("ten\t1\nA\t1\t2\nA\t1\tB\t1\n", r"pairs\.txt:1: number of folds must be an integer"),
    ("2\t1\nA\t1\t2\nA\t1\tB\t1\n", r"header says 2 folds x 2 x 1 pairs = 4 lines, found 2"),
    ("1\t1\t1\nA\t1\t2\nA\t1\tB\t1\n", r"pairs\.txt:1: header must be"),
    ("", "empty pairs file"),
])
def test_malformed_pairs_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_lfw_pairs(path)


def test_missing_pairs_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_lfw_pairs(tmp_path / "nope.txt")


def test_write_rejects_inconsistent_folds(tmp_path):
    with pytest.raises(ValueError, match="equal, non-zero numbers"):
        write_lfw_pairs(tmp_path / "p.txt", [[(("A", 1), ("A", 2), True)]])
    with pytest.raises(ValueError, match="same pair must name one person"):
        write_lfw_pairs(tmp_path / "p.txt", [[(("A", 1), ("B", 2), True), (("A", 1), ("B", 1), False)]])
    with pytest.raises(ValueError, match="without whitespace"):
        write_lfw_pairs(tmp_path / "p.txt", [[(("A B", 1), ("A B", 2), True), (("A", 1), ("B", 1), False)]])
    assert not (tmp_path / "p.txt").exists()


def test_lfw_image_path(tmp_path):
    (tmp_path / "Abel_Pacheco").mkdir()
    image = tmp_path / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg"
    image.write_bytes(b"x")
    assert lfw_image_path(tmp_path, "Abel_Pacheco", 4) == image
    with pytest.raises(FileNotFoundError, match=r"Abel_Pacheco_0012\.jpg"):
        lfw_image_path(tmp_path, "Abel_Pacheco", 12)
    assert lfw_image_path(tmp_path, "X", 1, must_exist=False) == tmp_path / "X" / "X_0001.jpg"
