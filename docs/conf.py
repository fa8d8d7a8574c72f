"""Sphinx configuration for metaloss_sk's documentation (built offline by ``make docs``)."""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's package, whatever the venv has installed
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import metaloss_sk  # noqa: E402

project = "metaloss_sk"
author = "metaloss_sk developers"
copyright = "the metaloss_sk developers"
release = version = metaloss_sk.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "generated/*.examples", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.codeobj.json"]
templates_path = ["_templates"]

# Nothing is fetched over the network: no intersphinx inventories, no remote images.
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "reference_url": {"metaloss_sk": None},
    "doc_module": ("metaloss_sk",),
    "backreferences_dir": "generated",
    "show_memory": False,
    "write_computation_times": True,
}

html_theme = "pydata_sphinx_theme"
html_title = "metaloss_sk"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # The examples' pages go without the page's table of contents: their code needs the width.
    "secondary_sidebar_items": {page: ["page-toc"] for page in
                                ("index", "api", "benchmarks", "ARCHITECTURE", "user_guide/*", "generated/*")},
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
# Pages without sections of their own need no section navigation.
html_sidebars = {"index": [], "benchmarks": [], "ARCHITECTURE": []}
html_show_sourcelink = False
