"""The Hydra app: composition of every recipe, clear errors, --help, and the packaged config tree."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class
from omegaconf import OmegaConf

from conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "conf" / "recipe").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_with_all_groups(recipe):
    cfg = compose_config([f"recipe={recipe}"])
    for key in ("task", "data", "teacher", "student", "loss", "optimizer", "trainer", "cache", "seed"):
        assert key in cfg, key
    assert cfg.recipe_name == recipe
    assert cfg.data.resolution > 0 and cfg.student.name


def test_overrides_reach_the_groups():
    cfg = compose_config(["recipe=smoke", "student.width_multiplier=0.25", "data.resolution=48", "loss=kd_ce"])
    assert cfg.student.width_multiplier == 0.25 and cfg.data.resolution == 48
    assert cfg.loss.terms.ground_truth.weight == pytest.approx(0.1)


def test_a_recipe_sets_the_top_level_options_and_the_command_line_still_wins():
    # face_attributes and planet turn channels_last on, coco measures latency over 10 runs; the base default
    # (false, 20) must not override them, and a command-line override must override the recipe.
    assert compose_config(["recipe=smoke"]).channels_last is False
    assert compose_config(["recipe=planet"]).channels_last is True
    assert compose_config(["recipe=planet", "channels_last=false"]).channels_last is False
    assert compose_config(["recipe=face_attributes"]).channels_last is True
    assert compose_config(["recipe=face_attributes", "channels_last=false"]).channels_last is False
    assert compose_config(["recipe=coco"]).latency_runs == 10
    assert compose_config(["recipe=smoke"]).latency_runs == 20


def test_unknown_recipe_and_key_are_clear_errors():
    with pytest.raises(MissingConfigException, match="recipe"):
        compose_config(["recipe=does_not_exist"])
    with pytest.raises(ConfigCompositionException, match="student.widht_multiplier"):
        compose_config(["recipe=smoke", "student.widht_multiplier=0.5"])


def test_help_lists_the_configuration_groups():
    done = subprocess.run([sys.executable, "-m", "distill", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for group in ("recipe:", "data:", "teacher:", "student:", "loss:", "trainer:", "smoke"):
        assert group in done.stdout


def test_every_package_directory_is_listed_in_pyproject():
    """Packages are listed by hand (conf/ is mapped to distill.conf); a new sub-package must be added there."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "distill").rglob("__init__.py")}
    assert found | {"distill.conf"} == listed


@pytest.mark.parametrize("old, new", [
    ("distill.data.modules.faces.FaceFolderDataModule", "distill.data.modules.face_folder.FaceFolderDataModule"),
    ("distill.data.modules.attributes.CelebADataModule", "distill.data.modules.celeba.CelebADataModule"),
])
def test_data_modules_recorded_under_their_former_module_still_resolve(old, new):
    """An earlier run's run_config.json names the real-data modules where they were defined then."""
    assert get_class(old) is get_class(new)
    module = importlib.import_module(old.rsplit(".", 1)[0])
    with pytest.raises(AttributeError, match="NoSuchModule"):
        getattr(module, "NoSuchModule")


@pytest.mark.parametrize("name", ["celeba", "face_folder", "synthetic_faces", "synthetic_attributes"])
def test_face_data_configs_name_an_importable_module(name):
    target = OmegaConf.load(ROOT / "conf" / "data" / f"{name}.yaml")._target_
    assert get_class(target).__module__ == target.rsplit(".", 1)[0]
