"""A non-editable install (wheel) runs recipes from any folder: the config tree ships inside the package."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SMOKE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_runs_the_smoke_recipe_from_another_folder(tmp_path):
    venv = tmp_path / "venv"
    # dependencies come from this environment; the package itself is installed from a freshly built wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("distill-*.whl"))
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run([str(python), "-c", "import distill.conf, distill; print(distill.__file__)"],
                           capture_output=True, text=True, cwd=workdir, check=True)
    assert str(venv) in where.stdout, where.stdout  # the installed copy, not the source tree
    command = [str(python), "-m", "distill", *TINY_SMOKE, "trainer.max_epochs=1",
               f"cache.dir={tmp_path / 'cache'}", f"hydra.run.dir={workdir / 'run'}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((workdir / "run" / "results.json").read_text())
    assert results["recipe"] == "smoke" and Path(results["student_checkpoint"]).is_file()
