"""Figures of architectures (the FBNetV2 paper's Fig. 6 style) and of searches (temperature,
cost and alpha probabilities over time). matplotlib is imported only when a figure is drawn,
through its Agg canvas, so the global backend is never changed."""

from .arch_figure import BarSpec, bar_specs, draw_architecture, plot_architecture
from .search_curves import draw_search_curves, plot_search_curves, select_decisions

__all__ = [
    "BarSpec",
    "bar_specs",
    "draw_architecture",
    "draw_search_curves",
    "plot_architecture",
    "plot_search_curves",
    "select_decisions",
]
