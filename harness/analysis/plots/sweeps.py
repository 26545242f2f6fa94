"""Tokens/s along one axis of a sweep: `x` is "param" (a parametric strategy's numeric parameter, n or k) or an
engine knob (`ubatch`, `flash_attn`, ...). One line per combination of everything else (the scope, the strategy,
for a knob also the strategy's parameters, and the other knobs that vary), pp and tg panels at the headline
tests; the `max_lines` lines with the highest peak are drawn and the title says how many there were.

A knob's values are categories on the x axis, the engine's default ("default") first, then numbers ascending,
then text; a parameter is numeric."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from harness.analysis.knobs import KNOB_LABELS, KNOBS, axis_label, knob_sort_key, knob_text, varying_knobs
from harness.analysis.load import config_key, param_name
from harness.analysis.plots.common import SCOPE, ci_errors
from harness.analysis.stats import headline_test

MAX_LINES = 10


def sweep_axes(table: pd.DataFrame) -> list[str]:
    """The axes worth a plot: "param" when a parametric strategy has two or more values, and every knob that
    varies."""
    axes = []
    params = table[table["param_value"].notna()] if "param_value" in table else table.iloc[0:0]
    if len(params) and params.groupby("strategy")["param_value"].nunique().max() > 1:
        axes.append("param")
    return axes + varying_knobs(table)


def _x_label(table: pd.DataFrame, x: str) -> str:
    if x != "param":
        return f"{x} ({KNOB_LABELS[x]})"
    names = sorted({n for n in map(param_name, table["strategy_params"].dropna().unique()) if n})
    return f"strategy parameter ({', '.join(names) or 'n or k'})"


def pick_lines(rows: pd.DataFrame, codes, max_lines: int) -> list[int]:
    """The lines (group codes) to draw: the fastest line of each strategy, then the fastest of the rest, at most
    `max_lines`, fastest first."""
    if not len(rows):
        return []
    peaks = rows["tps_mean"].groupby(codes).max().sort_values(ascending=False, kind="stable")
    strategies = rows["strategy"].groupby(codes).first()
    firsts = list(peaks.index[~strategies.reindex(peaks.index).duplicated().to_numpy()])[:max_lines]
    rest = [c for c in peaks.index if c not in set(firsts)][:max_lines - len(firsts)]
    return sorted(firsts + rest, key=lambda c: -peaks[c])


def plot_sweep(table: pd.DataFrame, x: str = "param", max_lines: int = MAX_LINES):
    """The plot (see the module docstring); None when `x` does not vary in the table."""
    if x != "param" and x not in KNOBS:
        raise ValueError(f"x is 'param' or a knob ({', '.join(KNOBS)}), not {x!r}")
    if x == "param":
        data = table[table["param_value"].notna()]
        data = data[data.groupby("strategy")["param_value"].transform("nunique") > 1]  # swept strategies only
    else:
        data = table if x in table and table[x].nunique() > 1 else table.iloc[0:0]
    if data.empty:
        return None
    others = [k for k in varying_knobs(table) if k != x]
    identity = [*SCOPE, "strategy", *(["strategy_params", "placement"] if x != "param" else []), *others]
    categories = sorted(data[x].unique(), key=knob_sort_key) if x != "param" else []
    many_scopes = len(data.drop_duplicates(SCOPE)) > 1
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, kind in zip(axes, ("pp", "tg")):
        test = headline_test(table, kind)
        rows = data[data["test"] == test] if test else data.iloc[0:0]
        codes = rows.groupby(identity, sort=False, dropna=False).ngroup().to_numpy() if len(rows) else []
        chosen = pick_lines(rows, codes, max_lines)
        n_lines = len(set(codes))
        for code in chosen:
            line = rows[codes == code]
            first = line.iloc[0]
            if x == "param":
                line = line.sort_values("param_value")
                xs, name = line["param_value"], str(first["strategy"])
            else:
                line = line.assign(_pos=[categories.index(v) for v in line[x]]).sort_values("_pos")
                xs, name = line["_pos"], config_key(first["strategy"], first["strategy_params"], first["placement"])
            extra = knob_text({k: first[k] for k in others})
            scope = f" [{first['model']}, {first['engine']}, {first['tool']}]" if many_scopes else ""
            ax.errorbar(xs, line["tps_mean"], yerr=ci_errors(line), marker="o", capsize=3, ms=4,
                        label=f"{name}{' ' + extra if extra else ''}{scope}")
        if categories:
            ax.set_xticks(range(len(categories)), [axis_label(c) for c in categories])
        ax.set_xlabel(_x_label(data, x))
        ax.set_ylabel("throughput (tokens/s)")
        more = f"\n({len(chosen)} of {n_lines} lines: each strategy's fastest, then the next fastest)" \
            if n_lines > len(chosen) else ""
        ax.set_title(f"{test or kind}: tokens/s against {x if x != 'param' else 'the parameter'}{more}", fontsize=9)
        ax.grid(alpha=0.3)
        if len(rows):
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_param_sweep(table: pd.DataFrame, max_lines: int = MAX_LINES):
    """`plot_sweep(table, "param")`: tokens/s against the strategy's numeric parameter."""
    return plot_sweep(table, "param", max_lines)
