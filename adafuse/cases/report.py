"""Cases -> text: the list table (app and CLI), the CLI listing, the methods side by side as HTML
cards, and Markdown / self-contained HTML reports with each case's trace round by round."""
from __future__ import annotations

from pathlib import Path

from ..eval.metrics import final_number
from ..trace import Round, Trace
from .. import render
from ..render import esc
from .load import Case, Run, TraceInfo, committed_rounds, load_trace
from .select import OUTCOMES, SORTS, Query, Verdict, is_binary

METRIC_NAMES = {"em": "EM", "f1": "F1", "accuracy": "accuracy", "chrf": "chrF", "bleu": "BLEU"}
STYLE = Path(__file__).resolve().parents[2] / "assets" / "style.css"
HOVER_JS = STYLE.with_name("hovercards.js")     # places the hover cards, as in the app


def short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def reference_text(case: Case) -> str:
    """What the answers are scored against: the final number of a GSM8K solution, else the
    accepted answers."""
    if case.metric == "accuracy" and case.references:
        return final_number(case.references[0]) or case.references[0]
    return " | ".join(dict.fromkeys(case.references))


def score_text(case: Case, slug: str, metric: str | None = None) -> str:
    metric = metric or case.metric
    r = case.results.get(slug)
    if r is None or metric not in r.metrics:
        return ""
    v = r.metrics[metric]
    return ("✓" if v >= 1 else "✗") if is_binary(metric) else f"{v:.1f}"


def answer_cell(case: Case, slug: str, width: int = 44) -> str:
    r = case.results.get(slug)
    if r is None:
        return "–"
    if r.error:
        return "error: " + short(r.error, width)
    mark = score_text(case, slug)
    return (f"{mark} " if mark else "") + (short(r.answer, width) if r.answer.strip() else "(empty)")


def trace_text(info: TraceInfo | None) -> str:
    if info is None:
        return "no trace"
    text = f"{render.plural(info.rounds, 'round')}, {info.branched} branched"
    if info.margin is not None:       # margin_round is the trace's index, which counts from 0
        text += f", closest margin {info.margin:.3f} (round {info.margin_round + 1})"
    return text


def labels(run: Run) -> dict[str, str]:
    return {s: m.label for s, m in run.methods.items()}


def list_table(run: Run, rows: list[tuple[Case, Verdict]], methods: list[str] | None = None
               ) -> tuple[list[str], list[list]]:
    """One row per case: its number in the run (#), the answer and score of each of `methods`
    (default all), and the inspected method's rounds, branched rounds and closest fused-score
    margin."""
    names = {s: label for s, label in labels(run).items() if methods is None or s in methods}
    headers = ["#", "item", "question", "reference"] + list(names.values()) + ["rounds", "branched", "margin"]
    out = []
    for case, v in rows:
        info = v.info
        row = [case.index, case.name, short(case.question, 64), short(reference_text(case), 32)]
        row += [answer_cell(case, s, 36) for s in names]
        row += [info.rounds if info else None, info.branched if info else None,
                round(info.margin, 3) if info and info.margin is not None else None]
        out.append(row)
    return headers, out


def describe(run: Run, query: Query, matched: int) -> str:
    """One line: how many match, under which filters, which method is inspected."""
    focus = run.method(query.focus)
    parts = [f"{matched} of {len(run.cases)} items match"]
    if query.outcomes:
        parts.append("filters: " + ", ".join(query.outcomes))
    if query.task:
        parts.append(f"task {query.task}")
    if query.search:
        parts.append(f"search {query.search!r}")
    parts.append(f"sort: {query.sort}{' (reversed)' if query.reverse else ''}")
    if focus:
        parts.append(f"inspecting {run.methods[focus].label}")
    return " · ".join(parts)


def listing(run: Run, rows: list[tuple[Case, Verdict]], query: Query) -> str:
    """The CLI's plain-text list: a block per case, every method's answer and score."""
    names = labels(run)
    focus = run.method(query.focus)
    width = max([len(n) for n in names.values()] + [len("reference")])
    out = []
    for case, v in rows:
        out.append(f"{case.name}  {short(case.question, 100)}")
        if case.note:
            out.append(f"  {'note':<{width}}  {case.note}")
        if case.references:
            out.append(f"  {'reference':<{width}}  {short(reference_text(case), 80)}")
        for slug, label in names.items():
            if slug not in case.results:
                continue
            extra = f"   [{trace_text(v.info)}]" if slug == focus else ""
            out.append(f"  {label:<{width}}  {answer_cell(case, slug, 60)}{extra}")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- one case, as HTML

def cards_html(run: Run, case: Case, focus: str | None) -> str:
    """The reference and every method's output side by side; the inspected method first."""
    metric = METRIC_NAMES.get(case.metric, case.metric)
    cards = []
    if case.references:
        full = "\n".join(case.references)
        scored = reference_text(case)
        extra = (f'<div class="af-card-meta">scored against {esc(scored)}</div>'
                 if case.metric == "accuracy" and scored != full else "")
        cards.append(f'<div class="af-card af-ref"><h4>reference</h4><div class="af-card-text">{esc(full)}</div>'
                     f"{extra}</div>")
    order = ([focus] if focus in case.results else []) + [s for s in run.methods if s in case.results and s != focus]
    for slug in order:
        r = case.results[slug]
        mark = score_text(case, slug)
        verdict_cls = ""
        if mark and is_binary(case.metric):
            verdict_cls = " af-right" if mark == "✓" else " af-wrong"
        head = esc(run.methods[slug].label) + (" · inspected" if slug == focus else "")
        text = esc(r.prediction.strip()) or "<i>(empty)</i>"
        meta = [f"{metric} {mark}" if mark else "", f"answer {esc(short(r.answer, 60))}" if r.answer else "",
                render.plural(r.rounds, "round") if r.rounds else "", f"{r.seconds:.1f} s" if r.seconds else ""]
        if r.error:
            meta.append(f"error: {esc(r.error)}")
        cls = "af-card af-focus" if slug == focus else "af-card"
        cards.append(f'<div class="{cls}{verdict_cls}"><h4>{head}</h4><div class="af-card-text">{text}</div>'
                     f'<div class="af-card-meta">{" · ".join(m for m in meta if m)}</div></div>')
    return '<div class="af-compare">' + "".join(cards) + "</div>"


def case_header_html(case: Case, v: Verdict | None = None) -> str:
    parts = [f'<div class="af-case-head"><b>{esc(case.name)}</b> ',
             f'<span class="af-case-q">{esc(case.question)}</span>']
    if case.note:
        parts.append(f'<div class="af-case-note">{esc(case.note)}</div>')
    if v is not None and v.info is not None:
        parts.append(f'<div class="af-meta">{esc(trace_text(v.info))}</div>')
    return "".join(parts) + "</div>"


def contested(trace: Trace) -> list[Round]:
    """Rounds that reached the output with two or more candidates: where the proposals differed."""
    return [r for r in committed_rounds(trace.rounds, trace.text) if len(r.candidates) > 1]


def rounds_html(trace: Trace, rounds: list[Round]) -> str:
    head = render.candidate_header_html(trace.models, with_round=True, mode=trace.mode)
    rows = "".join(render.candidate_rows_html(rnd, trace.models, with_round=True, mode=trace.mode) for rnd in rounds)
    return f'<table class="af-rounds">{head}{rows}</table>'


# ---------------------------------------------------------------- reports

def markdown_report(run: Run, rows: list[tuple[Case, Verdict]], query: Query, matched: int) -> str:
    focus = run.method(query.focus)
    names = labels(run)
    lines = [f"# Cases: {run.name}", "", describe(run, query, matched) + ".", ""]
    lines += _legend(query)
    for n, (case, v) in enumerate(rows, start=1):
        lines += [f"## {n}. {case.name}: {_md(short(case.question, 160))}", ""]
        if case.note:
            lines += [f"*{_md(case.note)}*", ""]
        if case.references:
            lines += [f"Reference: `{_code(reference_text(case))}`", ""]
        metric = METRIC_NAMES.get(case.metric, case.metric)
        lines += [f"| method | answer | {metric} | rounds |", "| --- | --- | --- | --- |"]
        for slug, label in names.items():
            if slug in case.results:
                r = case.results[slug]
                answer = "error: " + r.error if r.error else (r.answer or "(empty)")
                label = f"**{label}**" if slug == focus else label
                lines.append(f"| {label} | {_md(short(answer, 80))} | {score_text(case, slug)} | {r.rounds} |")
        lines.append("")
        trace = load_trace(case, focus) if focus else None
        if trace is None:
            continue
        lines += [f"**{names[focus]}**, one bracket per round ({trace_text(v.info)}):", "",
                  _fence(trace.bracketed() or trace.text), ""]
        fought = contested(trace)
        if fought:
            columns = render.score_columns(trace.mode, trace.models)   # as the HTML report's (rounds_html)
            lines += ["Rounds with competing candidates (✓ winner, lowest fused score):", "",
                      "| round | | candidate | proposed by | " + " | ".join(columns) + " |",
                      "|" + " --- |" * (4 + len(columns))]
            for rnd in fought:
                for i, c in enumerate(rnd.candidates):
                    nll = " | ".join(render.fmt(render.shown(c.nll.get(m, float("nan")), trace.mode))
                                     for m in trace.models)
                    who = ", ".join(render.short_name(p) for p in c.proposers)
                    lines.append(f"| {rnd.number} | {'✓' if i == rnd.chosen_index else ''} "
                                 f"| `{_code(render.candidate_label(c))}` | {who} | {nll} "
                                 f"| {render.fmt(render.shown(c.score, trace.mode))} |")
            lines.append("")
    return "\n".join(lines)


def html_report(run: Run, rows: list[tuple[Case, Verdict]], query: Query, matched: int) -> str:
    """One offline page: per case the methods side by side, the inspected trace as bracketed spans
    (hover a span for its round) and the table of contested rounds."""
    focus = run.method(query.focus)
    body = [f"<h1>Cases: {esc(run.name)}</h1><p>{esc(describe(run, query, matched))}.</p>"]
    body += [f"<p>{esc(line)}</p>" for line in _legend(query) if line]
    for n, (case, v) in enumerate(rows, start=1):
        body.append(f'<section class="af-case"><h2>{n}. {esc(case.name)}</h2>{case_header_html(case, v)}')
        body.append(cards_html(run, case, focus))
        trace = load_trace(case, focus) if focus else None
        if trace is not None:
            body.append(f"<h3>{esc(run.methods[focus].label)}, round by round</h3>{render.spans_html(trace)}")
            fought = contested(trace)
            if fought:
                body.append(f"<h3>Rounds with competing candidates</h3>{rounds_html(trace, fought)}")
        body.append("</section>")
    css = STYLE.read_text(encoding="utf-8") if STYLE.is_file() else ""
    js = HOVER_JS.read_text(encoding="utf-8") if HOVER_JS.is_file() else ""
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>AdaFuse cases</title>"
            f"<style>{css}\nbody{{font-family:system-ui,sans-serif;max-width:1200px;margin:24px auto;padding:0 16px}}"
            f".af-case{{margin:28px 0;padding-top:8px;border-top:1px solid #ddd}}</style><script>{js}</script></head><body>"
            + "".join(body) + "</body></html>\n")


def _legend(query: Query) -> list[str]:
    out = [f"Filter {o}: {OUTCOMES[o]}." for o in query.outcomes]
    if query.sort != "order":
        out.append(f"Sorted by {SORTS[query.sort]}.")
    return out + ([""] if out else [])


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text}\n{ticks}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return text.replace("`", "'").replace("|", "\\|")
