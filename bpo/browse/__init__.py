"""Read the evaluation case by case: a self-contained HTML results browser (``browse.html``)."""

from bpo.browse.data import DEFAULT_OPTIMIZER, BrowseInputError, Row, load_rows, load_winrates
from bpo.browse.page import build_browse, write_browse

__all__ = ["DEFAULT_OPTIMIZER", "BrowseInputError", "Row", "build_browse", "load_rows", "load_winrates", "write_browse"]
