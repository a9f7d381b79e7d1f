"""Turn per-item records into summary.json, a Markdown report and a self-contained Plotly HTML.

Scores are in percent (0-100): EM / F1 / accuracy are means over items; BLEU and chrF are corpus
scores from sacrebleu. In a task, every method is scored on the items that all of them finished
(n is shown when that is fewer than the task's selection, as for an interrupted run).
"""
from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path
from typing import Iterable

from . import metrics
from .runner import Method
from .tasks import Task

PRIMARY = {"em": "em", "f1": "f1", "number": "accuracy", "bleu": "bleu"}
METRIC_LABELS = {"em": "EM", "f1": "F1", "accuracy": "Acc", "bleu": "BLEU", "chrf": "chrF"}
MAX_WORDS_BUCKET = 4      # words-per-round histogram: 1, 2, 3, 4+ (M=3 never exceeds 3)


def summarize(tasks: list[Task], methods: list[Method], results: dict[str, dict[str, list[dict]]],
              *, spm_model: str | None = None, extra: dict | None = None) -> dict:
    """The summary of one run: per task and method, scores, cost and the words-per-round histogram.
    Only records of items in the task's current selection count."""
    out = {"methods": {m.slug: {"label": m.label, **m.params()} for m in methods}, "tasks": {}, **(extra or {})}
    for task in tasks:
        keys = {item.key for item in task.items}
        by_method = {m.slug: [r for r in results.get(task.name, {}).get(m.slug, []) if r["key"] in keys]
                     for m in methods}
        # An interrupted run: compare every method on the items all of them finished.
        for recs in by_method.values():
            if recs:
                keys &= {r["key"] for r in recs}
        by_method = {slug: [r for r in recs if r["key"] in keys] for slug, recs in by_method.items()}
        row = {"metric": task.spec.metric, "primary": PRIMARY[task.spec.metric], "items": len(task.items),
               "data": task.data_path, "skipped_lines": list(task.problems), "settings": task.fingerprint(),
               "methods": {}}
        for m in methods:
            recs = by_method[m.slug]
            if recs:
                row["methods"][m.slug] = _cell(task, recs, spm_model)
        bleu_kinds = {c.get("bleu_kind") for c in row["methods"].values()} - {None}
        if bleu_kinds:
            row["bleu_kind"] = sorted(bleu_kinds)[0]
        out["tasks"][task.name] = row
    return out


def _cell(task: Task, recs: list[dict], spm_model: str | None) -> dict:
    cell: dict = {"n": len(recs), "errors": sum(1 for r in recs if r.get("error"))}
    if task.spec.metric == "bleu":
        scores = metrics.translation_scores([r["answer"] for r in recs], [r["reference"][0] for r in recs],
                                            spm_model)
        cell["scores"] = {"bleu": round(scores.bleu, 2), "chrf": round(scores.chrf, 2)}
        cell["bleu_kind"] = scores.bleu_kind
        cell["signatures"] = {"bleu": scores.bleu_signature, "chrf": scores.chrf_signature}
    else:
        names = sorted(recs[0]["metrics"])
        cell["scores"] = {k: round(100 * statistics.fmean(r["metrics"][k] for r in recs), 2) for k in names}
    cell["score"] = cell["scores"][PRIMARY[task.spec.metric]]
    # Seconds are compared across methods, so only those timed by this run count: a record merged
    # in from another machine (`computed_on`, see merge.py) ran on other hardware under other load.
    seconds = [r["seconds"] for r in recs if "computed_on" not in r]
    cell["seconds_mean"] = round(statistics.fmean(seconds), 3) if seconds else None
    cell["seconds_total"] = round(sum(seconds), 1)
    elsewhere = collections.Counter(r["computed_on"] for r in recs if "computed_on" in r)
    if elsewhere:
        cell["computed_on"] = dict(sorted(elsewhere.items()))     # where -> records, none of them timed
    cell["forward_passes_mean"] = round(statistics.fmean(r["forward_passes"] for r in recs), 1)
    by_model = collections.Counter()
    tokens = []
    for r in recs:
        if r.get("trace"):
            by_model.update(r["trace"]["stats"]["forward_passes"])
            tokens.append(max(r["trace"]["stats"]["new_tokens"].values(), default=0))
    cell["forward_passes_by_model"] = {k: round(v / len(recs), 1) for k, v in sorted(by_model.items())}
    cell["new_tokens_mean"] = round(statistics.fmean(tokens), 1) if tokens else 0.0
    rounds = [len(r["words_per_round"]) for r in recs]
    cell["rounds_mean"] = round(statistics.fmean(rounds), 2)
    cell["words_per_round"] = words_histogram(w for r in recs for w in r["words_per_round"])
    stops = collections.Counter(r["trace"]["stats"]["stop_reason"] for r in recs if r.get("trace"))
    cell["stop_reasons"] = dict(sorted(stops.items()))
    return cell


def words_histogram(words: Iterable[int]) -> dict[str, float]:
    """Share of rounds (percent) that committed 1, 2, 3, 4+ words."""
    counts = collections.Counter(min(max(int(w), 1), MAX_WORDS_BUCKET) for w in words)
    total = sum(counts.values())
    labels = {i: str(i) for i in range(1, MAX_WORDS_BUCKET)} | {MAX_WORDS_BUCKET: f"{MAX_WORDS_BUCKET}+"}
    return {labels[i]: (round(100 * counts[i] / total, 2) if total else 0.0) for i in labels} | {"rounds": total}


# ---------------------------------------------------------------- Markdown

def markdown(summary: dict) -> str:
    methods = summary["methods"]
    tasks = summary["tasks"]
    slugs = [s for s in methods if any(s in t["methods"] for t in tasks.values())]
    lines = ["# AdaFuse evaluation", ""]
    if summary.get("command"):
        lines += [f"Command: `{summary['command']}`", ""]
    if summary.get("models"):
        lines += [f"Models: {', '.join(summary['models'])}", ""]

    lines += ["## Scores", "", _score_caption(tasks), ""]
    header = ["method"] + list(tasks)
    lines += [_row(header), _row(["---"] * len(header))]
    for slug in slugs:
        cells = [methods[slug]["label"]]
        for name, t in tasks.items():
            c = t["methods"].get(slug)
            cells.append("" if c is None else f"{c['score']:.1f}" + ("" if c["n"] == t["items"] else f" (n={c['n']})"))
        lines.append(_row(cells))
    lines.append("")
    secondary = [(name, t) for name, t in tasks.items() if t["metric"] in ("em", "f1", "bleu")]
    if secondary:
        lines += ["Secondary metrics (F1 for QA, chrF for translation):", ""]
        names = [n for n, _ in secondary]
        lines += [_row(["method"] + names), _row(["---"] * (len(names) + 1))]
        for slug in slugs:
            cells = [methods[slug]["label"]]
            for name, t in secondary:
                c = t["methods"].get(slug)
                key = "chrf" if t["metric"] == "bleu" else ("em" if t["metric"] == "f1" else "f1")
                cells.append("" if c is None else f"{c['scores'][key]:.1f}")
            lines.append(_row(cells))
        lines.append("")

    lines += ["## Words per round", "",
              "Share of rounds that committed 1, 2, 3 or 4+ words (adafuse methods; the paper reports "
              "80.29 / 15.53 / 4.18 % for 1 / 2 / 3 words on NQ).", ""]
    lines += [_row(["task", "method", "1", "2", "3", "4+", "rounds"]), _row(["---"] * 7)]
    for name, t in tasks.items():
        for slug in slugs:
            c = t["methods"].get(slug)
            if c is None or methods[slug]["mode"] != "adafuse":
                continue
            h = c["words_per_round"]
            lines.append(_row([name, methods[slug]["label"], f"{h['1']:.1f}", f"{h['2']:.1f}", f"{h['3']:.1f}",
                               f"{h['4+']:.1f}", str(h["rounds"])]))
    lines.append("")

    lines += ["## Cost", "", "Mean per item: wall seconds / forward passes (all models) / rounds.", ""]
    lines += [_row(["method"] + list(tasks)), _row(["---"] * (len(tasks) + 1))]
    for slug in slugs:
        cells = [methods[slug]["label"]]
        for t in tasks.values():
            c = t["methods"].get(slug)
            if c is None:
                cells.append("")
                continue
            mark = "†" if c.get("computed_on") else ""
            seconds = "n/a" if c["seconds_mean"] is None else f"{c['seconds_mean']:.2f} s"
            cells.append(f"{seconds}{mark} / {c['forward_passes_mean']:.0f} / {c['rounds_mean']:.1f}")
        lines.append(_row(cells))
    merged = collections.Counter()
    for name, row in tasks.items():
        for c in row["methods"].values():
            merged.update({(name, where): n for where, n in c.get("computed_on", {}).items()})
    if merged:
        lines += ["", "† Seconds over the results this run timed; merged in and timed elsewhere: "
                  + "; ".join(f"{task}, {n} on {where}" for (task, where), n in sorted(merged.items())) + "."]
    lines.append("")

    for key, title in (("branches", "B sweep"), ("tau", "tau sweep"), ("max_words", "M sweep")):
        sweep = sweep_series(summary, key)
        if not sweep:
            continue
        values = sorted({v for series in sweep.values() for v in series})
        lines += [f"## {title}", "", _row([key] + [f"{v:g}" for v in values]), _row(["---"] * (len(values) + 1))]
        for name, series in sweep.items():
            lines.append(_row([name] + [f"{series[v]:.1f}" if v in series else "" for v in values]))
        lines.append("")

    problems = [p for t in tasks.values() for p in t["skipped_lines"]]
    if problems:
        lines += ["## Skipped input lines", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(lines)


def _score_caption(tasks: dict) -> str:
    parts = []
    for name, t in tasks.items():
        label = t.get("bleu_kind") or METRIC_LABELS[t["primary"]]
        parts.append(f"{name}: {label}")
    return "Primary metric per task (percent): " + "; ".join(parts) + "."


def sweep_series(summary: dict, key: str) -> dict[str, dict[float, float]]:
    """task -> {value of `key`: score} over the adafuse methods that differ only in `key`."""
    methods = {s: m for s, m in summary["methods"].items() if m["mode"] == "adafuse"}
    groups = collections.defaultdict(list)
    for slug, m in methods.items():
        rest = json.dumps({k: v for k, v in m.items() if k not in (key, "label")}, sort_keys=True)
        groups[rest].append(slug)
    out = {}
    for slugs in groups.values():
        if len({methods[s][key] for s in slugs}) < 2:
            continue
        for name, t in summary["tasks"].items():
            series = {methods[s][key]: t["methods"][s]["score"] for s in slugs if s in t["methods"]}
            if len(series) >= 2:
                out[name] = dict(sorted(series.items()))
        break
    return out


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


# ---------------------------------------------------------------- HTML

def html(summary: dict) -> str:
    """One HTML file with plotly.js inlined: opens offline."""
    import plotly.graph_objects as go
    import plotly.io as pio

    methods, tasks = summary["methods"], summary["tasks"]
    slugs = [s for s in methods if any(s in t["methods"] for t in tasks.values())]
    figs = []

    fig = go.Figure()
    for slug in slugs:
        names = [n for n, t in tasks.items() if slug in t["methods"]]
        fig.add_bar(name=methods[slug]["label"], x=names, y=[tasks[n]["methods"][slug]["score"] for n in names],
                    hovertemplate="%{x}: %{y:.1f}<extra>" + methods[slug]["label"] + "</extra>")
    fig.update_layout(title="Score per method and task (" + _score_caption(tasks) + ")", barmode="group",
                      yaxis_title="score (%)")
    figs.append(fig)

    adaptive = [s for s in slugs if methods[s]["mode"] == "adafuse"]
    if adaptive:
        base = adaptive[0]
        fig = go.Figure()
        for bucket in ("1", "2", "3", "4+"):
            names = [n for n, t in tasks.items() if base in t["methods"]]
            fig.add_bar(name=f"{bucket} word" + ("" if bucket == "1" else "s"), x=names,
                        y=[tasks[n]["methods"][base]["words_per_round"][bucket] for n in names])
        fig.update_layout(title=f"Words per round, {methods[base]['label']} (paper, NQ: 80.29 / 15.53 / 4.18 %)",
                          barmode="stack", yaxis_title="share of rounds (%)")
        figs.append(fig)

        fixed = sorted((s for s in slugs if methods[s]["mode"] == "fixed"), key=lambda s: methods[s]["fixed_words"])
        if fixed:
            fig = go.Figure()
            for slug in [base] + fixed:
                names = [n for n, t in tasks.items() if slug in t["methods"]]
                fig.add_bar(name=methods[slug]["label"], x=names, y=[tasks[n]["methods"][slug]["score"] for n in names])
            fig.update_layout(title="Adaptive rounds vs fixed-length rounds (L words)", barmode="group",
                              yaxis_title="score (%)")
            figs.append(fig)

    for key, title in (("branches", "B sweep: branches at an uncertain word"), ("tau", "tau sweep"),
                       ("max_words", "M sweep")):
        sweep = sweep_series(summary, key)
        if sweep:
            fig = go.Figure()
            for name, series in sweep.items():
                fig.add_scatter(name=name, x=list(series), y=list(series.values()), mode="lines+markers")
            fig.update_layout(title=title, xaxis_title=key, yaxis_title="score (%)")
            figs.append(fig)

    for field_name, title, unit in (("seconds_mean", "Latency per item", "seconds"),
                                    ("forward_passes_mean", "Forward passes per item (all models)", "passes")):
        fig = go.Figure()
        for slug in slugs:
            names = [n for n, t in tasks.items() if slug in t["methods"]]
            fig.add_bar(name=methods[slug]["label"], x=names, y=[tasks[n]["methods"][slug][field_name] for n in names])
            # (a cell whose results were all computed elsewhere has no seconds: None, no bar)
        fig.update_layout(title=title, barmode="group", yaxis_title=unit)
        figs.append(fig)

    parts = []
    for i, fig in enumerate(figs):
        fig.update_layout(template="plotly_white", height=420, margin=dict(t=60, b=40, l=60, r=20))
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}))
    table = markdown(summary)
    return ("<!doctype html>\n<html><head><meta charset='utf-8'><title>AdaFuse evaluation</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}</style></head><body>"
            "<h1>AdaFuse evaluation</h1>" + "\n".join(parts) +
            "<h2>Tables</h2><pre>" + _escape(table) + "</pre></body></html>\n")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_reports(out_dir: Path, summary: dict, name: str = "report") -> dict[str, Path]:
    """summary.json, report.md, report.html; NAME.summary.json, NAME.md, NAME.html for another name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_name = "summary.json" if name == "report" else f"{name}.summary.json"
    paths = {"summary": out_dir / json_name, "markdown": out_dir / f"{name}.md", "html": out_dir / f"{name}.html"}
    paths["summary"].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(summary) + "\n", encoding="utf-8")
    try:
        page = html(summary)
    except ModuleNotFoundError as e:
        # A long run on a box without plotly (a bare GPU image) must not end in a traceback after its
        # last item: the results and the other reports are on disk, and the page can be made later.
        if e.name is None or e.name.split(".")[0] != "plotly":
            raise
        print(f"{paths.pop('html')} not written: plotly is not installed. `pip install plotly`, then "
              f"`python -m adafuse eval report --out {out_dir}` writes it from the results.", file=sys.stderr)
    else:
        paths["html"].write_text(page, encoding="utf-8")
    return paths
