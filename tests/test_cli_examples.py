"""The examples run as documented."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_example_is_a_gallery_script():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(
        p.name for p in (ROOT / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("plot_*.py")))
def test_example_runs(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)], check=True,
                   cwd=tmp_path, timeout=600, capture_output=True, env=env)
