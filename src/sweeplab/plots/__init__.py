"""Figures drawn from the aggregated datasets in ``results/`` (never from raw runs)."""

from .figures import FIGURES, draw_all

__all__ = ["FIGURES", "draw_all"]
