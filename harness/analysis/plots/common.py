"""What every plot shares: matplotlib on the Agg backend, 95% CI error bars, writing and closing figures."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SCOPE = ["sweep_label", "model", "engine", "tool"]


def ci_errors(rows: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars (2 × n) from `tps_mean`, `ci_low`, `ci_high`; 0 where there is no interval."""
    low = (rows["tps_mean"] - rows["ci_low"]).fillna(0).clip(lower=0).to_numpy()
    high = (rows["ci_high"] - rows["tps_mean"]).fillna(0).clip(lower=0).to_numpy()
    return np.vstack([low, high])


def scope_title(model, engine, tool, sweep=None) -> str:
    return f"{model}, {tool}, {engine}" + (f" ({sweep})" if sweep else "")


def save_figure(fig, folder: Path, name: str) -> Path:
    """The figure as `<name>.png` and `<name>.svg` in `folder`, then closed; the PNG's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    try:
        fig.savefig(png, dpi=110)
        fig.savefig(folder / f"{name}.svg")
    finally:
        plt.close(fig)
    return png


def figure_png(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (for notebooks: `IPython.display.Image(figure_png(fig))`), then closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()
