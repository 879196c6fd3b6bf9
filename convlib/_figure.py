"""The Figure class every convlib drawing returns (imports matplotlib)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure as _MplFigure


class Figure(_MplFigure):
    """A matplotlib Figure that shows itself as a PNG in a notebook.

    A plain ``matplotlib.figure.Figure`` made without pyplot is displayed only
    when the notebook's matplotlib integration happens to be active; this one
    does not depend on the backend, and is never registered with pyplot (so
    nothing needs closing).
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        # No software tag in the PNG: the same figure gives the same bytes.
        self.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        return buf.getvalue()
