"""Every Python block of the README and of the documentation's pages runs, as written.

The blocks of one file run in order. A block starting with ``# continued from
the block above`` runs in the namespace the blocks before it left; any other
block runs alone, so a snippet that silently needs names from another fails
here. Blocks run in a temporary folder (files they write go there), with
matplotlib's Agg backend; the primitives a page registers are forgotten after it.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTINUED = "# continued from the block above"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documents():
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
    return [ROOT / "README.md", *pages]


def python_blocks(path):
    """``(line, code)`` of each fenced Python block, ``line`` being the block's first line in the file."""
    text = path.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        yield text.count("\n", 0, match.start(1)) + 1, match.group(1)


def test_the_readme_and_the_user_guide_have_python_blocks():
    counts = {path.name: len(list(python_blocks(path))) for path in documents()}
    assert counts["README.md"] >= 1 and counts["search.md"] >= 1


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(path, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metaloss_sk import PRIMITIVES

    monkeypatch.chdir(tmp_path)
    registered = dict(PRIMITIVES)  # a page may register a primitive; the other tests must not see it
    namespace = None
    try:
        for line, code in python_blocks(path):
            if namespace is None or not code.startswith(CONTINUED):
                namespace = {"__name__": "__main__"}
            # Padded so that a traceback names the file's own line numbers.
            exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)  # noqa: S102
    finally:
        plt.close("all")
        PRIMITIVES.clear()
        PRIMITIVES.update(registered)
