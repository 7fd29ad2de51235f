"""New figures without pyplot: a figure made here joins no global figure list and switches no backend.

One job: :func:`subplots`, the pyplot-free twin of :func:`matplotlib.pyplot.subplots`. A library that calls
``matplotlib.use("Agg")`` or pyplot at import time switches a Jupyter kernel's inline backend off; figures made
from :class:`matplotlib.figure.Figure` leave the backend to the user, display inline in a notebook (IPython
shows any ``Figure``), and save with ``fig.savefig`` anywhere.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """Make a figure and its axes, as ``pyplot.subplots`` does, without pyplot.

    Args:
        nrows: Rows of axes.
        ncols: Columns of axes.
        figsize: Width and height in inches.
        **kwargs: ``layout`` goes to the figure; everything else (``sharex``, ``squeeze``, ...) to
            :meth:`Figure.subplots`.

    Returns:
        The figure and its axes (one Axes, or an array of them, as ``pyplot.subplots`` returns).
    """
    layout = kwargs.pop("layout", None)
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)
