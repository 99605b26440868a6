"""Sphinx settings of the tinyllm book (built by ``python book/build.py``; see its docstring).

Everything the pages load is on this disk: the theme's files, MathJax 3 from the
``sphinx-mathjax-offline`` wheel, and the figures that the recorded notebooks carry.
"""

project = "tinyllm"
author = "the tinyllm authors"
copyright = "2026, the tinyllm authors"

extensions = [
    "myst_nb",  # reads the notebooks: the chapters' text, code and recorded outputs
    "sphinx-mathjax-offline",  # copies MathJax into _static/ and points mathjax_path at it
]
nb_execution_mode = "off"  # the outputs were recorded by book/execute.py; nothing runs here
myst_enable_extensions = ["dollarmath", "amsmath"]  # $x$, $$...$$ with \tag{6.1}
myst_heading_anchors = 3  # [section 6.5](#65-reading-attention-maps) style links resolve
suppress_warnings = ["myst.header"]  # the chapters go from "#" title to "##" sections, as written

html_theme = "sphinx_book_theme"
html_title = "tinyllm: a language model from scratch"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,  # the notebooks themselves are in the repository
    "use_fullscreen_button": False,
    "use_repository_button": False,
}
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False


def _display_math_as_written(app, doctree):
    """Sphinx wraps a display formula that contains ``\\\\`` in ``\\begin{split}``, assuming the
    line breaks are its own; the chapters' line breaks sit inside ``cases``, ``pmatrix`` or
    ``aligned``, and MathJax refuses a ``\\tag`` inside ``split``. Such formulas go to MathJax as
    written, between the display delimiters."""
    from docutils import nodes

    for block in doctree.findall(nodes.math_block):
        text = block.astext()
        if r"\tag" in text and r"\\" in text:
            block["nowrap"] = True
            block.children = [nodes.Text(r"\[" + text + r"\]")]


def setup(app):
    app.connect("doctree-read", _display_math_as_written)
