"""The MobileNet paper's result tables as data, for the paper column of reports and recipe READMEs.

Metrics are fractions in 0..1 like ours; mult-adds and params in millions. A row is keyed by the student's
(width multiplier, input resolution). Each table names the paper's metric and the key of ours it is set beside,
and the data its recipe reproduces it on (``datasets``: the data modules of the synthetic stand-in and of the
paper's data set or the recipe's documented real one). A run on any other data (``data=image_folder``, a user's own
folders) is never set beside the paper: ``paper_table(recipe, data)`` gives None for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PaperRow", "PaperTable", "PAPER_TABLES", "paper_row", "paper_table", "is_recipe_data"]


@dataclass(frozen=True)
class PaperRow:
    label: str
    metric: float
    mult_adds_m: float
    params_m: float


@dataclass(frozen=True)
class PaperTable:
    source: str
    metric_name: str          # the paper's name for its metric
    compares_to: str          # the key in our metrics that is set beside it
    rows: dict[tuple[float, int], PaperRow] = field(default_factory=dict)
    teacher: PaperRow | None = None
    datasets: tuple[str, ...] = ()  # the data modules (class names) the recipe reproduces this table on


PAPER_TABLES: dict[str, PaperTable] = {
    "dogs": PaperTable(
        source="Table 10 (Stanford Dogs)", metric_name="top-1", compares_to="top1",
        rows={
            (1.0, 224): PaperRow("1.0 MobileNet-224", 0.833, 569, 3.3),
            (0.75, 224): PaperRow("0.75 MobileNet-224", 0.819, 325, 1.9),
            (1.0, 192): PaperRow("1.0 MobileNet-192", 0.819, 418, 3.3),
            (0.75, 192): PaperRow("0.75 MobileNet-192", 0.805, 239, 1.9),
        },
        teacher=PaperRow("Inception V3", 0.84, 5000, 23.2),
        datasets=("SyntheticFineGrainedDataModule", "StanfordDogsDataModule"),
    ),
    "face_attributes": PaperTable(
        source="Table 12 (face attributes, YFCC100M)", metric_name="mean AP", compares_to="mAP",
        rows={
            (1.0, 224): PaperRow("1.0 MobileNet-224", 0.887, 568, 3.2),
            (0.5, 224): PaperRow("0.5 MobileNet-224", 0.881, 149, 0.8),
            (0.25, 224): PaperRow("0.25 MobileNet-224", 0.872, 45, 0.2),
            (1.0, 128): PaperRow("1.0 MobileNet-128", 0.881, 185, 3.2),
            (0.5, 128): PaperRow("0.5 MobileNet-128", 0.877, 48, 0.8),
            (0.25, 128): PaperRow("0.25 MobileNet-128", 0.864, 15, 0.2),
        },
        teacher=PaperRow("Baseline (in-house classifier)", 0.869, 1600, 7.5),
        datasets=("SyntheticAttributesDataModule", "CelebADataModule"),
    ),
    "facenet": PaperTable(
        source="Table 14 (FaceNet distillation)", metric_name="1e-4 accuracy", compares_to="accuracy",
        rows={
            (1.0, 160): PaperRow("1.0 MobileNet-160", 0.794, 286, 4.9),
            (1.0, 128): PaperRow("1.0 MobileNet-128", 0.783, 185, 5.5),
            # printed as "0.75 MobileNet-128"; its cost is that of 0.75 MobileNet-160
            (0.75, 160): PaperRow("0.75 MobileNet-160", 0.752, 166, 3.4),
            (0.75, 128): PaperRow("0.75 MobileNet-128", 0.725, 108, 3.8),
        },
        teacher=PaperRow("FaceNet", 0.83, 1600, 7.5),
        datasets=("SyntheticFacesDataModule", "FaceFolderDataModule"),
    ),
    "planet": PaperTable(
        source="Table 11 (Im2GPS)", metric_name="continent (2500 km)", compares_to="acc_2500km",
        rows={(1.0, 224): PaperRow("PlaNet MobileNet", 0.793, 580, 13)},
        teacher=PaperRow("PlaNet", 0.776, 5740, 52),
        datasets=("SyntheticGeoDataModule", "GeoCSVDataModule"),
    ),
}


def is_recipe_data(recipe: str, data: str | None) -> bool:
    """Whether ``data`` (a data module's class name or ``_target_``; None: not recorded, as in older results) is
    data the recipe reproduces its paper table on. Recipes without a paper table have no data of their own."""
    table = PAPER_TABLES.get(recipe)
    if table is None:
        return False
    return data is None or str(data).rsplit(".", 1)[-1] in table.datasets


def paper_table(recipe: str, data: str | None = None) -> PaperTable | None:
    """The paper table a run of ``recipe`` on ``data`` is set beside; None for a run on other data."""
    return PAPER_TABLES[recipe] if is_recipe_data(recipe, data) else None


def paper_row(recipe: str, width: float | None, resolution: int | None, data: str | None = None) -> PaperRow | None:
    table = paper_table(recipe, data)
    if table is None or width is None or resolution is None:
        return None
    return table.rows.get((float(width), int(resolution)))
