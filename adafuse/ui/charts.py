"""Plotly figures: methods compared side by side, and words committed per round."""
from __future__ import annotations

import math
from collections import Counter

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..trace import Trace
from ..render import PALETTE, model_colors, plural, short_name

METHOD_COLOR = {"AdaFuse": "#444444"}


def _method_colors(names: list[str]) -> list[str]:
    return [METHOD_COLOR.get(n, PALETTE[(i + 2) % len(PALETTE)]) for i, n in enumerate(names)]


def comparison_figure(results: list, models: list[str]) -> go.Figure:
    """One panel per measure: the ensemble objective (mean over models of each model's mean
    per-token NLL of the output; lower is better), latency, forward passes per model, and the
    task metrics when a reference answer was given."""
    names = [r.name for r in results]
    metric_names = []
    for r in results:
        metric_names += [k for k in r.metrics if k not in metric_names]
    titles = ["Ensemble objective: mean NLL, lower is better", "Latency (s)", "Forward passes"]
    if metric_names:
        titles.append("Metrics vs reference")
    rows, cols = (2, 2) if metric_names else (1, 3)
    cell = [(1 + i // cols, 1 + i % cols) for i in range(len(titles))]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.32 if rows == 2 else 0.1)
    colors = _method_colors(names)
    objective = [None if r.objective is None or math.isnan(r.objective) else r.objective for r in results]
    fig.add_trace(go.Bar(x=names, y=objective, marker_color=colors, name="objective", showlegend=False,
                         text=[f"{v:.3f}" if v is not None else "" for v in objective],
                         textposition="outside", cliponaxis=False), *cell[0])
    fig.add_trace(go.Bar(x=names, y=[r.seconds for r in results], marker_color=colors, showlegend=False,
                         name="seconds", text=[f"{r.seconds:.1f}" for r in results], textposition="outside",
                         cliponaxis=False), *cell[1])
    mcolors = model_colors(models)
    for m in models:
        fig.add_trace(go.Bar(x=names, y=[r.forward_passes.get(m, 0) for r in results],
                             name=f"passes: {short_name(m)}", marker_color=mcolors[m], legendgroup="fp"), *cell[2])
    if metric_names:
        for j, k in enumerate(metric_names):
            scale = 1.0 if k == "BLEU" else 100.0       # all metrics shown on a 0-100 scale
            fig.add_trace(go.Bar(x=names, y=[r.metrics.get(k, 0.0) * scale for r in results], name=k,
                                 marker_color=PALETTE[(j + 3) % len(PALETTE)], legendgroup="metric"), *cell[3])
        fig.update_yaxes(range=[0, 105], title_text="score (0-100)", row=cell[3][0], col=cell[3][1])
    fig.update_layout(barmode="group", height=330 * rows + 60, margin=dict(l=40, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.12 if rows == 2 else -0.35), template="plotly_white",
                      font=dict(size=11))
    fig.update_xaxes(tickangle=-25, automargin=True)
    return fig


def words_histogram(trace: Trace | None) -> go.Figure:
    """How many words each round committed: long spans mean the models were confident."""
    counts = Counter(trace.words_per_round()) if trace else Counter()
    xs = sorted(counts)
    fig = go.Figure(go.Bar(x=xs, y=[counts[x] for x in xs], marker_color="#0072B2",
                           text=[counts[x] for x in xs], textposition="outside", cliponaxis=False))
    n = len(trace.rounds) if trace else 0
    mean = sum(k * v for k, v in counts.items()) / n if n else 0.0
    fig.update_layout(title=f"Words per round ({plural(n, 'round')}, mean {mean:.2f})", height=300,
                      xaxis=dict(title="words committed in the round", dtick=1),
                      yaxis=dict(title="rounds"), template="plotly_white",
                      margin=dict(l=40, r=20, t=50, b=40))
    return fig
