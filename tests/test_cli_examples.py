"""The examples run as documented."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_example_runs(script, tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)], check=True,
                   cwd=tmp_path, timeout=600, capture_output=True)
