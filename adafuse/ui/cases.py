"""The Cases view's callbacks: open evaluation results (the shipped gallery, a run folder on this
server, or uploaded files), filter and page through the items, show one item's trace exactly as
a live run is shown, and hand the item to the Studio for a live what-if with other tau / M / B.

Formatting only: adafuse.cases opens, selects and describes; adafuse.render draws the trace.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import render
from ..cases import report
from ..cases.load import CasesError, Run, load_trace, open_cases
from ..cases.select import OUTCOMES, Query, page, select, verdict
from ..errors import AdafuseError
from .callbacks import NONE_CHOICE, toast
from .paths import RUNS_ROOT_ENV, hide_paths, runs_root
from .presets import stop_to_text

GALLERY_DIR = Path(__file__).resolve().parents[2] / "assets" / "gallery"
PAGE_SIZE = 20
ALL_TASKS = "all tasks"
OUTCOME_CHOICES = [(text, key) for key, text in OUTCOMES.items()]
SORT_CHOICES = [("run order", "order"), ("closest fused-score margin first", "margin"),
                ("most rounds first", "rounds"), ("largest gain over the best single model", "gain")]
# eval metric of an item -> the Studio's task kind (which metrics the live run reports)
STUDIO_TASK = {"em": "qa", "f1": "qa", "accuracy": "math", "chrf": "translation", "bleu": "translation"}


def gallery() -> Run:
    """The curated cases shipped in assets/gallery (an empty run, with a warning, if missing)."""
    try:
        return open_cases([GALLERY_DIR], name="gallery")
    except CasesError as e:
        return Run("gallery", [], {}, [f"the gallery could not be opened: {e}"])


# ---- opening ------------------------------------------------------------------------------------

def open_folder(text: str) -> Run:
    """Paths typed in the box (one per line, or comma-separated), inside runs_root()."""
    root = runs_root()
    if root is None:
        raise CasesError("opening folders on the server is off here; upload the per-item JSONL files instead "
                         f"(the operator turns it on with {RUNS_ROOT_ENV})")
    names = [p.strip() for line in str(text or "").splitlines() for p in line.split(",") if p.strip()]
    if not names:
        raise CasesError("type the --out folder of an eval run (or a JSONL / trace file) first")
    paths = []
    for name in names:
        p = Path(name).expanduser()
        p = (p if p.is_absolute() else root / p).resolve()
        if p != root and root not in p.parents:
            raise CasesError(f"{name} is outside the folder this app may open runs from ({RUNS_ROOT_ENV})")
        paths.append(p)
    return open_cases(paths, name=", ".join(str(p.relative_to(root)) for p in paths))


def open_uploads(files) -> Run:
    files = [f for f in (files or []) if f]
    if not files:
        raise CasesError("no file uploaded")
    paths = [Path(getattr(f, "name", f)) for f in files]
    return open_cases(paths, name="upload: " + ", ".join(p.name for p in paths))


# ---- the list -----------------------------------------------------------------------------------

def source_html(run: Run) -> str:
    methods = ", ".join(m.label for m in run.methods.values()) or "none"
    tasks = ", ".join(run.tasks) or "none"
    head = (f"<b>{html.escape(run.name)}</b>: {len(run.cases)} items · tasks {html.escape(tasks)} · "
            f"methods {html.escape(methods)}")
    warn = "".join(f'<div class="af-warn">{html.escape(hide_paths(w))}</div>' for w in run.warnings)
    return f'<div class="af-source">{head}{warn}</div>'


def query_of(run: Run, outcomes, task, search, sort, focus) -> Query:
    focus = focus if focus in run.methods else None
    return Query(tuple(outcomes or ()), None if task in (None, "", ALL_TASKS) else task, str(search or ""),
                 sort or "order", False, focus).checked()


def list_view(run: Run, outcomes, task, search, sort, focus, every, number, step: int = 0):
    """(count line, page table, page number) for the current query. The table shows the inspected
    method and the single models, or with `every` all methods."""
    with user_errors():
        query = query_of(run, outcomes, task, search, sort, focus)
        rows = select(run, query)
        shown, number, pages = page(rows, int(number or 1) + step, PAGE_SIZE)
        slug = run.method(query.focus)
        columns = None if every else [s for s in run.methods if s == slug or s in run.singles()]
        headers, table = report.list_table(run, shown, columns)
        line = f"{report.describe(run, query, len(rows))} · page {number} of {pages}"
        if not rows:
            line += " · nothing matches: loosen the filters"
        return html.escape(line), gr.update(value=pd.DataFrame(table, columns=headers),
                                            column_widths=column_widths(len(headers) - 7)), number


def column_widths(n_methods: int) -> list[str]:
    """#, item, question, reference, the methods' answers, rounds, branched, margin. In pixels, not
    shares of the screen: on a phone a share is a word's width, and the table scrolls sideways instead."""
    share = f"{max(140, 540 // max(n_methods, 1))}px"
    return ["48px", "112px", "260px", "140px"] + [share] * n_methods + ["76px", "92px", "80px"]


def task_choices(run: Run) -> list[str]:
    return [ALL_TASKS] + run.tasks


def method_choices(run: Run) -> list[tuple[str, str]]:
    return [(m.label, s) for s, m in run.methods.items()]


def opened(run: Run):
    """After opening: the run, its description, the task and method choices, the filters reset,
    the first page, and no item selected."""
    focus = run.default_focus()
    count, table, number = list_view(run, [], ALL_TASKS, "", "order", focus, False, 1)
    return (run, source_html(run), gr.update(choices=task_choices(run), value=ALL_TASKS),
            gr.update(choices=method_choices(run), value=focus), [], "", "order", False, count, table, number
            ) + empty_detail()


def on_open_folder(text):
    with user_errors():
        return opened(open_folder(text))


def on_upload(files):
    with user_errors():
        return opened(open_uploads(files))


def on_gallery():
    return opened(gallery())


# ---- one case -----------------------------------------------------------------------------------

def empty_detail():
    """selected case, header+cards, spans, candidates, proposals."""
    return (None, '<div class="af-empty">Select an item in the list to see its trace.</div>',
            render.spans_html(None), _frame(render.candidate_table(None)), _frame(render.proposal_table(None)))


def show_case(run: Run, focus: str, index):
    """The item's header and the methods side by side, then the focus method's trace drawn like a
    live run, its candidate and proposal tables, and the tau / M / B the trace was made with."""
    if index is None:
        return empty_detail() + (gr.skip(), gr.skip(), gr.skip())
    with user_errors():
        if not 0 <= int(index) < len(run.cases):
            raise CasesError("no such item in the open run; open it again")
        case = run.cases[int(index)]
        slug = focus if focus in case.results else run.method(None)
        info = run.trace_info(slug)[case.index] if slug else None
        v = verdict(case, slug, run.singles(), info)
        trace = load_trace(case, slug) if slug else None
        head = report.case_header_html(case, v) + report.cards_html(run, case, slug)
        if trace is None:
            failed = slug in case.results and case.results[slug].error
            note = ("This method failed on the item (see its card)." if failed else
                    "No trace of this method is stored for the item (the gallery keeps AdaFuse's only).")
            return (case.index, head, f'<div class="af-out af-empty">{note}</div>', None, None,
                    gr.skip(), gr.skip(), gr.skip())
        s = trace.settings
        return (case.index, head, render.spans_html(trace),
                _frame(render.candidate_table(trace)), _frame(render.proposal_table(trace)),
                float(s.get("tau", 0.7)), int(s.get("max_words", 3)), int(s.get("branches", 1)))


def on_select(run: Run, focus: str, evt: gr.SelectData):
    """A click on any cell of a row: the row's first column is the item's number in the run."""
    row = evt.row_value or []
    return show_case(run, focus, row[0] if row else None)


def rerun_inputs(run: Run, index, focus: str, tau, max_words, branches, presets, max_tokens_limit: int,
                 allow_custom: bool):
    """The Studio's inputs (models, prompt, settings, task kind, reference) filled from the item's
    trace with the chosen tau / M / B, and the Studio tab selected: its run then streams live."""
    with user_errors():
        if index is None:
            raise CasesError("select an item first")
        case = run.cases[int(index)]
        slug = focus if focus in case.results else run.method(None)
        trace = load_trace(case, slug) if slug else None
        if trace is None:
            raise CasesError(f"{case.name} has no trace to re-run (the method failed on it)")
        models = list(trace.models)
        if len(models) < 2:      # a single model's trace: re-run it in the run's ensemble
            ensemble = run.methods.get(run.method(None))
            models = list(ensemble.models) if ensemble and len(ensemble.models) >= 2 else models
        unknown = [m for m in models if m not in presets]
        if unknown and not allow_custom:
            raise CasesError(f"{case.name} was decoded with {', '.join(unknown)}, which this app does not "
                             "offer (ADAFUSE_ALLOW_CUSTOM_MODELS=1 allows it)")
        if len(models) < 2:
            raise CasesError("a live AdaFuse run needs two models; this trace names one")
        s = trace.settings
        third = models[2] if len(models) > 2 else NONE_CHOICE
        return (models[0], models[1], third, trace.prompt, float(tau), int(max_words), int(branches),
                min(int(s.get("max_new_tokens", 64)), max_tokens_limit), stop_to_text(s.get("stop", ())),
                s.get("prompt_format", "raw"), STUDIO_TASK.get(case.metric, "chat"), " | ".join(case.references),
                gr.update(selected="studio"))


def _frame(headers_rows) -> pd.DataFrame:
    headers, rows = headers_rows
    return pd.DataFrame(rows, columns=headers)


class user_errors:
    """CasesError and other AdafuseErrors become a toast naming the problem."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, AdafuseError):
            raise toast(str(exc)) from exc
        if isinstance(exc, OSError):
            raise toast(f"cannot read: {exc}") from exc
        return False
