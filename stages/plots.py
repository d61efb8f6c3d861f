"""Drawing shared by the figures of several reports: the confusion matrix (evaluate's
plots/confusion.png, the PR report's base-vs-head figure), and the one way a figure is saved (a
PNG written atomically, the figure freed). Matplotlib is imported by the callers, which choose the
backend and own the figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def draw_confusion(ax: Any, cm: np.ndarray, labels: list[str], title: str, *,
                   vmax: float | None = None, tick_fontsize: float | None = None,
                   count_fontsize: float = 8, counts: str = "all", ylabel: bool = True) -> None:
    """A confusion matrix (rows actual, columns predicted) on ``ax``, each cell's count written in.

    ``vmax`` pins the colour scale (from 0), so that two panels compare; by default it spans this
    matrix. ``counts``: ``"all"`` cells, ``"nonzero"`` ones, or ``"none"`` (too many classes to
    read). ``ylabel`` False leaves the axis label to the panel on the left.
    """
    ax.imshow(cm, cmap="Blues", **({} if vmax is None else {"vmin": 0, "vmax": vmax}))
    ticks = {} if tick_fontsize is None else {"fontsize": tick_fontsize}
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", **ticks)
    ax.set_yticks(range(len(labels)), labels, **ticks)
    ax.set_xlabel("predicted")
    if ylabel:
        ax.set_ylabel("actual")
    ax.set_title(title)
    if counts == "none":
        return
    dark = (cm.max() if vmax is None else vmax) / 2   # white text on the darker cells
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j] or counts == "all":
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=count_fontsize,
                        color="white" if cm[i, j] > dark else "black")


def save_png(fig: Any, path: str | Path, dpi: int) -> None:
    """Write ``fig`` to ``path`` as a PNG (a temp file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    from stages.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
