"""The PR report's before/after figures: one 800 px PNG per plot CSV, base and head on shared axes.

One function per figure (confusion matrix, per-class F1, training curves, latency), each given the
sides that have data; :func:`render_comparison` picks one by the plot's name, titles and saves it.
`dvc plots diff` renders HTML only, which a pull-request comment cannot show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.plots import save_png

if TYPE_CHECKING:
    import pandas as pd

FIG_WIDTH_IN, FIG_DPI = 8.0, 100   # 800 px: a PR comment column shows it at full size
FONT = 10
MAX_BARS = 30  # per-class F1: more classes than this and only those that changed most are drawn
SIDE_STYLE = {"base": {"color": "#9a9a9a", "linestyle": "--"},
              "head": {"color": "#1f77b4", "linestyle": "-"}}


def confusion_figure(frames: dict[str, pd.DataFrame], roles: list[str], captions: dict[str, str],
                     title: str) -> tuple[Any, str]:
    """Both sides' confusion matrices on one colour scale; many classes: one full-width panel each."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from stages.plots import draw_confusion

    labels = sorted({str(v) for df in frames.values()
                     for v in pd.concat([df["actual"], df["predicted"]])})
    cms = {r: pd.crosstab(pd.Categorical(frames[r]["actual"].astype(str), labels),
                          pd.Categorical(frames[r]["predicted"].astype(str), labels),
                          dropna=False).to_numpy() for r in roles}
    stacked = len(labels) > 10 or len(roles) == 1
    side = FIG_WIDTH_IN if stacked else FIG_WIDTH_IN / 2
    fig, axes = plt.subplots(len(roles) if stacked else 1, 1 if stacked else len(roles),
                             figsize=(FIG_WIDTH_IN, side * (len(roles) if stacked else 1) + 0.9),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    vmax = max(int(cm.max()) for cm in cms.values()) or 1   # one colour scale for both
    small = len(labels) > 6
    left = set(axes[:, 0])
    for ax, role in zip(axes.flat, roles, strict=True):
        draw_confusion(ax, cms[role], labels, captions[role], vmax=vmax,
                       tick_fontsize=FONT - 2 if small else FONT, count_fontsize=FONT - 2,
                       counts="nonzero" if len(labels) <= 20 else "none", ylabel=ax in left)
    return fig, title


def per_class_f1_figure(frames: dict[str, pd.DataFrame], roles: list[str],
                        captions: dict[str, str], title: str) -> tuple[Any, str]:
    """F1 per class, one bar per side; with many classes, the ones that changed most."""
    f1 = {r: frames[r].assign(label=frames[r]["label"].astype(str)).set_index("label")["f1"]
          .astype(float) for r in roles}
    labels = sorted(set().union(*(s.index for s in f1.values())))
    if len(labels) > MAX_BARS and len(roles) == 2:     # keep it readable: the biggest changes
        change = (f1["head"].reindex(labels) - f1["base"].reindex(labels)).abs().fillna(1)
        labels = sorted(change.sort_values(ascending=False).index[:MAX_BARS])
        title += f" (the {MAX_BARS} classes that changed most)"
    labels = labels[:MAX_BARS]
    fig, ax = grouped_bars(f1, labels, roles, captions, "%.3f", 1.2, 0.25)
    ax.set(xlim=(0, 1.08), xlabel="F1 on the test split")
    return fig, title


def train_epochs_figure(frames: dict[str, pd.DataFrame], roles: list[str],
                        captions: dict[str, str], title: str) -> tuple[Any, str]:
    """Loss and validation scores by epoch, one panel each, both sides' curves in each."""
    import matplotlib.pyplot as plt
    import pandas as pd

    losses = [c for c in ("train_loss", "val_loss") if any(c in df for df in frames.values())]
    scores = [c for c in ("val_macro_f1", "val_accuracy")
              if any(c in df for df in frames.values())]
    panels = [(cols, ylabel) for cols, ylabel in ((losses, "loss (cross-entropy)"),
                                                  (scores, "validation score"))
              if cols]
    fig, axes = plt.subplots(1, len(panels), figsize=(FIG_WIDTH_IN, 3.6), sharex=True,
                             squeeze=False, layout="constrained")
    markers = {"train_loss": "o", "val_loss": "s", "val_macro_f1": "o", "val_accuracy": "s"}
    for ax, (cols, ylabel) in zip(axes.flat, panels, strict=True):
        for role in roles:
            df = frames[role]
            for col in cols:
                if col in df:
                    ax.plot(pd.to_numeric(df["epoch"]), pd.to_numeric(df[col]),
                            marker=markers[col], label=f"{role}: {col}", **SIDE_STYLE[role])
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FONT - 2)
    if len(panels) == 2:        # the same score range on both sides by construction
        axes[0, 1].set_ylim(top=1.0)
    return fig, title


def latency_figure(frames: dict[str, pd.DataFrame], roles: list[str], captions: dict[str, str],
                   title: str) -> tuple[Any, str]:
    """p50 latency at batch 1 per runtime, one bar per side."""
    p50 = {r: frames[r].assign(runtime=frames[r]["runtime"].astype(str))
           .set_index("runtime")["p50_ms"].astype(float) for r in roles}
    runtimes = list(dict.fromkeys(i for s in p50.values() for i in s.index))
    fig, ax = grouped_bars(p50, runtimes, roles, captions, "%.1f ms", 1.4, 0.4)
    ax.set(xlabel="p50 ms per text (batch 1); shorter is faster")
    ax.margins(x=0.12)
    return fig, title


# the plot's name (commands.report.PLOTS) -> the function that draws its figure
FIGURES = {"confusion": confusion_figure, "per_class_f1": per_class_f1_figure,
           "train_epochs": train_epochs_figure, "latency": latency_figure}


def render_comparison(name: str, frames: dict[str, pd.DataFrame], captions: dict[str, str],
                      title: str, path: Path) -> None:
    """One 800 px PNG comparing base and head (whichever sides have data) on shared axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1})
    roles = [r for r in ("base", "head") if r in frames]
    fig, title = FIGURES[name](frames, roles, captions, title)
    fig.suptitle(title, fontsize=FONT + 2)
    save_png(fig, path, dpi=FIG_DPI)


def grouped_bars(values: dict, labels: list[str], roles: list[str], captions: dict[str, str],
                 fmt: str, base_in: float, per_bar_in: float) -> tuple[Any, Any]:
    """Horizontal bars, one group per label and one bar per side, labelled with their values."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, base_in + per_bar_in * len(labels) * len(roles)),
                           layout="constrained")
    height = 0.8 / len(roles)
    for k, role in enumerate(roles):
        ys = [i + (k - (len(roles) - 1) / 2) * height for i in range(len(labels))]
        bars = ax.barh(ys, values[role].reindex(labels).fillna(0), height=height,
                       color=SIDE_STYLE[role]["color"], label=captions[role])
        ax.bar_label(bars, fmt=fmt, padding=2, fontsize=FONT - 2)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=len(roles), fontsize=FONT - 1)
    return fig, ax
