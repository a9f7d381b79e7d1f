"""Trace -> what the app and the Cases view show: coloured span HTML (every piece of model or user
text escaped), candidate and proposal tables, a status line and a shareable Markdown summary.

It reads a Trace and nothing else, so both ui/ and cases/ use it (cases/ may not import ui/:
tests/test_layering.py)."""
from __future__ import annotations

import html
import math

from .trace import Candidate, Round, Trace

# Colour-blind-safe palette (Okabe-Ito, reordered); the i-th selected model gets the i-th colour.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
BRANCH_MARK = "⋔"
STOP_REASONS = {"eos": "end of sequence", "max_new_tokens": "max new tokens reached",
                "stop_string": "stop string", "context_full": "context window full",
                "cancelled": "Stop pressed", "time_limit": "time limit reached"}


def model_colors(models: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def short_name(model: str) -> str:
    """Last path component of an HF id or a local path: keeps table headers readable."""
    return model.rstrip("/").split("/")[-1]


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _span_text_html(text: str) -> str:
    """Escaped span text; newlines shown as ↵ plus a real line break."""
    parts = [esc(p) for p in text.split("\n")]
    return '<span class="af-nl">↵</span><br>'.join(parts)


def legend_html(models: list[str]) -> str:
    colors = model_colors(models)
    keys = [f'<span class="af-key" style="--c:{colors[m]}">{esc(short_name(m))}</span>' for m in models]
    keys.append('<span class="af-key af-key-agree">proposed by several</span>')
    keys.append(f'<span class="af-key af-key-branch">{BRANCH_MARK} round branched</span>')
    return '<div class="af-legend">' + "".join(keys) + "</div>"


def candidate_label(c: Candidate) -> str:
    """A candidate's text as the tables show it (escapes visible). One that reached a stop string
    ends the output: ⏹ marks the end, then the proposal's text after it, which no model scored."""
    text = repr(c.text)[1:-1]
    if not c.stop:
        return text
    return f"{text} ⏹ cut: {repr(c.dropped)[1:-1]}" if c.dropped else f"{text} ⏹"


PROBABILITY_MODES = ("unite", "gac")   # token-level methods: their numbers are -log p


def score_columns(mode: str, models: list[str]) -> list[str]:
    """Headers of the per-model and fused columns. A UniTE or GaC step's candidates are tokens and
    its numbers probabilities (nll = -log p: adafuse/unite.py, gac.py), shown as such; AdaFuse's are
    NLLs."""
    if mode in PROBABILITY_MODES:
        return [f"p {short_name(m)}" for m in models] + ["mean p"]
    return [f"NLL {short_name(m)}" for m in models] + ["fused"]


def shown(value: float, mode: str) -> float:
    """A per-model or fused number as its column shows it (see score_columns)."""
    return math.exp(-value) if mode in PROBABILITY_MODES and value == value else value


def candidate_header_html(models: list[str], with_round: bool = False, mode: str = "adafuse") -> str:
    """The header row over candidate_rows_html's rows (the same arguments)."""
    cells = (["round"] if with_round else []) + ["", "candidate", "proposed by"] + score_columns(mode, models)
    return "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in cells) + "</tr>"


def candidate_rows_html(rnd: Round, models: list[str], with_round: bool = False, mode: str = "adafuse") -> str:
    """Table rows of a round's candidates: winner mark, text, proposers, each model's NLL (UniTE:
    probability), fused score."""
    rows = []
    for i, c in enumerate(rnd.candidates):
        cls = ' class="af-win"' if i == rnd.chosen_index else ""
        first = f"<td>{rnd.number}</td>" if with_round else ""
        nlls = "".join(f"<td>{fmt(shown(c.nll.get(m, float('nan')), mode))}</td>" for m in models)
        rows.append(f"<tr{cls}>{first}<td>{'✓' if i == rnd.chosen_index else ''}</td>"
                    f"<td class=\"af-cand\">{esc(candidate_label(c))}</td>"
                    f"<td>{esc(', '.join(short_name(p) for p in c.proposers))}</td>{nlls}"
                    f"<td><b>{fmt(shown(c.score, mode))}</b></td></tr>")
    return "".join(rows)


def round_tooltip_html(rnd: Round, models: list[str], mode: str = "adafuse") -> str:
    """The round's candidates (each model's NLL, fused score, winner) and each model's proposal."""
    rows = candidate_rows_html(rnd, models, mode=mode)
    props = []
    for p in rnd.proposals:
        words = " ".join(f"{esc(repr(w)[1:-1])}<sub>{fmt(m, 2)}</sub>" for w, m in zip(p.words, p.margins))
        mark = f" {BRANCH_MARK} branched" if p.branched else ""
        props.append(f"<div><b>{esc(short_name(p.model))}</b>{mark}: {words}</div>")
    return (f'<span class="af-tip"><span class="af-tip-title">Round {rnd.number}</span>'
            f"<table>{candidate_header_html(models, mode=mode)}" + rows + "</table>"
            + '<span class="af-tip-props">words with first-token margins</span>' + "".join(props)
            + "</span>")


def spans_html(trace: Trace | None, live: bool = False, note: str = "") -> str:
    """The output as bracketed spans coloured by the winning candidate's proposer(s)."""
    if trace is None:
        return '<div class="af-out af-empty">Run AdaFuse to see the output here, round by round.</div>'
    colors = model_colors(trace.models)
    pieces = []
    spans = trace.spans()
    for rnd, text in zip(trace.rounds, spans):
        if not text:
            continue
        win = rnd.winner
        proposers = [p for p in win.proposers if p in colors] or trace.models[:1]
        style = f"--c:{colors[proposers[0]]}"
        classes = ["af-span"]
        if len(proposers) > 1:
            classes.append("af-agree")
            stops = ", ".join(f"{colors[p]}33" for p in proposers)
            style += f";--bg:linear-gradient(90deg, {stops})"
        if rnd.branched:
            classes.append("af-branched")
        mark = f'<sup class="af-mark" title="branched">{BRANCH_MARK}</sup>' if rnd.branched else ""
        lead = " " if text[:1].isspace() and pieces else ""
        pieces.append(f'{lead}<span class="{" ".join(classes)}" tabindex="0" data-round="{rnd.index}" '
                      f'style="{style}"><span class="af-b">[</span>{_span_text_html(text.strip())}'
                      f'<span class="af-b">]</span>{mark}{round_tooltip_html(rnd, trace.models, trace.mode)}</span>')
    if not pieces:
        pieces.append('<span class="af-empty">(no output yet)</span>')
    if live:
        pieces.append('<span class="af-cursor">▍</span>')
    body = "".join(pieces)
    meta = esc(note) if note else esc(status_line(trace, live))
    return (f'<div class="af-out">{legend_html(trace.models)}<div class="af-spans">{body}</div>'
            f'<div class="af-meta">{meta}</div></div>')


def status_line(trace: Trace, live: bool = False) -> str:
    s = trace.stats
    parts = [plural(len(trace.rounds), "round")]
    branched = sum(r.branched for r in trace.rounds)
    if trace.rounds:
        parts.append(f"{branched} branched")
    if s.seconds:
        parts.append(f"{s.seconds:.2f} s")
    if s.forward_passes:
        parts.append("forward passes " + ", ".join(f"{short_name(m)} {n}" for m, n in s.forward_passes.items()))
    if live:
        parts.append("decoding…")
    elif s.stop_reason:
        parts.append("stopped: " + STOP_REASONS.get(s.stop_reason, s.stop_reason))
    return " · ".join(parts)


CANDIDATE_COLUMNS = ("round", "winner", "candidate", "proposed by")


def candidate_table(trace: Trace | None) -> tuple[list[str], list[list]]:
    """Every round's candidates: proposers, each model's NLL, fused score; the winner marked ✓."""
    models, mode = (trace.models, trace.mode) if trace else ([], "adafuse")
    *per_model, fused = score_columns(mode, models)
    headers = list(CANDIDATE_COLUMNS) + per_model + [f"{fused}{' score' * (mode not in PROBABILITY_MODES)}", "words"]
    rows = []
    for rnd in (trace.rounds if trace else []):
        for i, c in enumerate(rnd.candidates):
            rows.append([rnd.number, "✓" if i == rnd.chosen_index else "", candidate_label(c),
                         ", ".join(short_name(p) for p in c.proposers)]
                        + [_num(shown(c.nll.get(m, float("nan")), mode)) for m in models]
                        + [_num(shown(c.score, mode)), c.words])
    return headers, rows


def proposal_table(trace: Trace | None) -> tuple[list[str], list[list]]:
    """Each model's greedy words and first-token margins per round, and whether it branched."""
    headers = ["round", "model", "words", "first-token margins", "branched", "spans put forward"]
    rows = []
    for rnd in (trace.rounds if trace else []):
        for p in rnd.proposals:
            rows.append([rnd.number, short_name(p.model), " | ".join(repr(w)[1:-1] for w in p.words),
                         " ".join(fmt(m, 2) for m in p.margins), "yes" if p.branched else "",
                         " | ".join(repr(s)[1:-1] for s in p.spans)])
    return headers, rows


def _num(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), 4)


# The settings each decoding mode reads; the others are in the trace but do not apply to it
# (an AdaFuse run carries fixed_words=1, which only fixed-length rounds use).
METHOD_SETTINGS = {"adafuse": ("tau", "max_words", "branches"), "fixed": ("fixed_words",), "unite": ("top_k",),
                   "gac": (), "greedy": ()}


def summary_markdown(trace: Trace, comparison: list | None = None, reference: str = "",
                     task: str = "") -> str:
    """A shareable Markdown report: settings, prompt, bracketed output, stats, comparison."""
    st = trace.settings
    lines = [f"## AdaFuse run: {' + '.join(short_name(m) for m in trace.models)}", ""]
    keys = [k for k in ("mode",) + METHOD_SETTINGS.get(st.get("mode"), ()) + ("max_new_tokens", "prompt_format")
            if k in st]
    lines.append("Settings: " + ", ".join(f"`{k}={st[k]}`" for k in keys))
    if st.get("stop"):
        lines.append("Stop strings: " + ", ".join(f"`{s!r}`" for s in st["stop"]))
    lines += ["", "**Prompt**", "", _fence(trace.prompt), "", "**Output** (one bracket per round)", "",
              _fence(trace.bracketed() or trace.text), ""]
    lines.append(f"{status_line(trace)}.")
    if reference:
        lines += ["", f"Reference{f' ({task})' if task else ''}: `{reference}`"]
    if comparison:
        metric_names = []
        for r in comparison:
            metric_names += [k for k in r.metrics if k not in metric_names]
        head = ["method", "output", "objective (mean NLL)", "seconds", "forward passes"] + metric_names
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in comparison:
            out = r.text.strip().replace("\n", " ⏎ ").replace("|", "\\|")
            if len(out) > 80:
                out = out[:77] + "…"
            if r.flag:                            # a degenerate output (compare.degenerate)
                out = f"⚠ {r.flag}: {out}"
            cells = [r.name, out, fmt(r.objective), f"{r.seconds:.2f}", str(sum(r.forward_passes.values()))]
            cells += [fmt(r.metrics[k], 2) if k in r.metrics else "–" for k in metric_names]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "_Made with AdaFuse Studio (adaptive ensemble decoding, arXiv 2601.06022)._"]
    return "\n".join(lines)


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text}\n{ticks}"
