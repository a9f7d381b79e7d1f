"""What the app's buttons do: re-validate every input server-side (the API bypasses the
sliders), get the models from the store, call the library, and format its trace.

Errors the user can act on become `gr.Error` toasts; nothing a request does survives it
except the loaded models, so a failed, cancelled or timed-out request leaves the app as it was.
"""
from __future__ import annotations

import hashlib
import html
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import render
from ..config import PROMPT_FORMATS, DecodeConfig
from ..errors import AdafuseError, InputError, ModelLoadError
from ..trace import Trace
from . import charts, compare
from .model_store import ModelStore, check_model_names, free_memory
from .paths import hide_paths
from .scoring import OutputScorer
from .sessions import NEW_RUN, Sessions
from .presets import load_task_presets, parse_stop, stop_to_text
from .metrics import TASKS

log = logging.getLogger("adafuse.app")

NONE_CHOICE = "(none)"
# The slider ranges of the UI; the server enforces them again.
TAU_RANGE, M_RANGE, B_RANGE = (0.0, 1.0), (1, 5), (1, 5)
MAX_PROMPT_CHARS = 20_000
TABLE_REFRESH_S = 1.0     # while streaming, tables and charts refresh at most this often
EXPORT_TTL_S = 3600      # export files are kept this long for their download buttons


@dataclass(frozen=True)
class Limits:
    max_new_tokens: int = 512     # per request, operator-set (ADAFUSE_MAX_NEW_TOKENS)
    time_limit_s: float = 180.0   # per request (ADAFUSE_TIME_LIMIT); decoding stops when exceeded

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(int(os.environ.get("ADAFUSE_MAX_NEW_TOKENS", cls.max_new_tokens)),
                   float(os.environ.get("ADAFUSE_TIME_LIMIT", cls.time_limit_s)))


@dataclass(frozen=True)
class RunRequest:
    models: tuple[str, ...]
    prompt: str
    cfg: DecodeConfig
    task: str
    reference: str


# The order of the inputs every decoding callback takes (app.py wires components in this order).
INPUT_NAMES = ("model_a", "model_b", "model_c", "prompt", "tau", "max_words", "branches", "max_new_tokens",
               "stop", "prompt_format", "task", "reference")


def parse_request(presets, limits: Limits, model_a, model_b, model_c, prompt, tau, max_words, branches,
                  max_new_tokens, stop, prompt_format, task, reference) -> RunRequest:
    """Validate raw inputs from the UI or API; raise InputError naming the first bad one by its
    API parameter name. Gradio does not preprocess them (app.py), so any JSON value gets here."""
    models = tuple(check_model_names([model_a, model_b, model_c], presets))
    prompt = _text("prompt", prompt)
    if not prompt.strip():
        raise InputError("prompt is empty; type one or pick a task preset")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"prompt has {len(prompt)} characters; the app takes at most {MAX_PROMPT_CHARS}")
    if not isinstance(stop, (list, tuple)):
        stop = _text("stop", stop)        # one stop string per line; the API may send a list
    prompt_format = _text("prompt_format", prompt_format) or "raw"
    if prompt_format not in PROMPT_FORMATS:
        raise InputError(f"prompt_format must be {' or '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    cfg = DecodeConfig(mode="adafuse", tau=tau, max_words=max_words, branches=branches,
                       max_new_tokens=max_new_tokens, prompt_format=prompt_format,
                       stop=parse_stop(stop)).validated().check_tau_range()
    _in_range("max_words (M)", cfg.max_words, *M_RANGE)
    _in_range("branches (B)", cfg.branches, *B_RANGE)
    _in_range("max_new_tokens", cfg.max_new_tokens, 1, limits.max_new_tokens)
    task = _text("task", task) or "chat"
    if task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return RunRequest(models, prompt, cfg, task, _text("reference", reference).strip())


def _text(name, value) -> str:
    """A text input: a string, or None for empty. The API can send a list or a number."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text (a string), got {type(value).__name__} {str(value)[:40]}")
    return value


def _in_range(name, value, low, high):
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low} and {high} in this app, got {value}")


def gpu_duration(*args, **kwargs) -> int:
    """ZeroGPU seconds for an AdaFuse run, from its max new tokens and model count."""
    return _gpu_duration(1, args, kwargs)


def compare_gpu_duration(trace_state, *args, **kwargs) -> int:
    """ZeroGPU seconds for the comparison: AdaFuse and every baseline of compare.plan."""
    return _gpu_duration(None, args, kwargs)


def _gpu_duration(decodes, args, kwargs) -> int:
    from .spaces_shim import gpu_seconds
    named = dict(zip(INPUT_NAMES, args))
    named.update({k: v for k, v in kwargs.items() if k in INPUT_NAMES})
    n_models = sum(1 for k in ("model_a", "model_b", "model_c") if named.get(k) not in (None, "", NONE_CHOICE))
    try:
        tokens = int(named.get("max_new_tokens") or 64)
    except (TypeError, ValueError):
        tokens = 64
    n_models = max(n_models, 2)
    return gpu_seconds(tokens, n_models, decodes or compare.decodes(n_models))


def _table(headers_rows) -> pd.DataFrame:
    headers, rows = headers_rows
    return pd.DataFrame(rows, columns=headers)


class Studio:
    """The app's state across requests is only the model store; everything else is per request."""

    def __init__(self, api=None, store: ModelStore | None = None, limits: Limits | None = None,
                 export_dir: str | None = None):
        if api is None:
            import adafuse as api
        self.api = api
        self.limits = limits or Limits.from_env()
        self.store = store or ModelStore(self._load_one, api.unavailable)
        self.export_dir = Path(export_dir or tempfile.mkdtemp(prefix="adafuse-exports-"))
        self.tasks = load_task_presets()
        self.sessions = Sessions()

    # ---- models -----------------------------------------------------------------------------
    def _load_one(self, name, progress=None):
        return self.api.load_model(name, device=os.environ.get("ADAFUSE_DEVICE", "auto"),
                                   dtype=os.environ.get("ADAFUSE_DTYPE", "auto"), trust_remote_code=False,
                                   progress=progress)

    def models_for(self, req: RunRequest, progress=None) -> list:
        last = [0.0]

        def report(message, fraction=None):       # the engine's (message, fraction | None)
            if fraction is not None:
                last[0] = max(0.0, min(1.0, float(fraction)))
            if progress is not None:
                progress(last[0], desc=str(message))
        return self.store.get(list(req.models), progress=report)

    def parse(self, *inputs) -> RunRequest:
        return parse_request(self.api.PRESETS, self.limits, *inputs)

    def model_picked(self, name):
        """A model box changed: a preset that cannot load here is named at once, in the status
        and a toast, instead of after Run."""
        try:
            self.store.check([name] if name and name != NONE_CHOICE else [])
        except ModelLoadError as e:
            return html.escape(self._load_failed(e, "Not available here."), quote=False)
        return gr.skip()

    # ---- task presets -----------------------------------------------------------------------
    def fill_task(self, preset: str):
        """Task preset -> (prompt, reference, prompt format, stop strings, max new tokens, task).
        An emptied box (a what-if re-run from Cases empties it) changes nothing."""
        if preset is None or preset == "":
            return tuple(gr.skip() for _ in range(6))
        p = self.tasks.get(preset) if isinstance(preset, str) else None
        if p is None:
            raise toast(f"unknown task preset {preset!r}; choose one of: {', '.join(self.tasks)}",
                        title="Invalid input")
        return (p.prompt, p.reference, p.prompt_format, stop_to_text(p.stop),
                min(p.max_new_tokens, self.limits.max_new_tokens), p.task)

    # ---- AdaFuse run ------------------------------------------------------------------------
    def run(self, *inputs, session=None, progress=gr.Progress()):
        """Stream an AdaFuse decode; yields the run outputs after every round. A Stop of the
        session (self.sessions) ends it after the current round, rendered like any other end.
        Outputs: status, spans, candidates, proposals, histogram, trace state, plain text,
        summary, JSON file, Markdown file."""
        with _user_errors(), self.sessions.job(session, "run") as job:
            req = self.parse(*inputs)
            try:
                self.store.check(req.models)       # fails fast, before "Loading…"
                if self.store.loaded != list(req.models):
                    yield self._status_only(f"Loading {', '.join(req.models)}… (the first run converts "
                                            "the embedded models once)")
                else:
                    yield self._status_only("Decoding…")
                lms = self.models_for(req, progress)
            except ModelLoadError as e:
                self.sessions.run_ended(session)
                yield self._status_only(self._load_failed(e), trace=None)
                return
            chat_note = no_chat_template_note(lms, req.cfg.prompt_format)
            last_table, trace = 0.0, None
            stream = self.api.stream(lms, req.prompt, req.cfg, max_seconds=self.limits.time_limit_s,
                                     should_stop=job.should_stop)
            try:
                for trace in stream:
                    now = time.monotonic()
                    full = now - last_table >= TABLE_REFRESH_S
                    if full:
                        last_table = now
                    if trace.stats.stop_reason:
                        break                      # the final yield: rendered below
                    yield self._live(trace, full, chat_note)
            finally:
                stream.close()                     # also on cancel: frees this request's caches
            if trace is None:
                raise InputError("the decoder produced no rounds")
            note = ""
            if trace.stats.stop_reason == "time_limit":
                note = (f"Stopped after the per-request time limit of {self.limits.time_limit_s:g} s; "
                        "the output so far is shown.")
            self.sessions.run_ended(session)
            yield self._final(trace, req, note, chat_note)

    def _status_only(self, message: str, **trace):
        """The status alone; `trace=None` also clears the trace state (a run that never started
        leaves nothing to compare)."""
        state = trace["trace"] if "trace" in trace else gr.skip()
        return (html.escape(message, quote=False),) + (gr.skip(),) * 4 + (state,) + (gr.skip(),) * 4

    def _load_failed(self, error: ModelLoadError, headline: str = "Not run: a model did not load.") -> str:
        """A model that cannot load ends the request like any other end, with a status and a
        toast: raising would mark every output of the event "Error" and blank the tables. The
        models still loaded stay loaded (ModelStore.check refused the selection first)."""
        warn(str(error), title="Model not loaded")
        kept = f" Still loaded: {', '.join(self.store.loaded)}." if self.store.loaded else ""
        return f"**{headline}** {error}{kept}"

    def _live(self, trace: Trace, full: bool, chat_note: str = ""):
        status = f"Decoding… round {len(trace.rounds)}" + (f"  \n{html.escape(chat_note)}" if chat_note else "")
        spans = render.spans_html(trace, live=True)
        if not full:
            return (status, spans) + tuple(gr.skip() for _ in range(8))
        return (status, spans, _table(render.candidate_table(trace)), _table(render.proposal_table(trace)),
                charts.words_histogram(trace), gr.skip(), trace.text, gr.skip(), gr.skip(), gr.skip())

    def _final(self, trace: Trace, req: RunRequest, note: str = "", chat_note: str = ""):
        """The end of a run, also a stopped one: every output, the exports included, is this run's."""
        stopped = trace.stats.stop_reason == "cancelled"
        headline = "**" + (note or ("Stopped." if stopped else "Done.")) + "**"
        status = headline + ("  \n" if note else " ") + render.status_line(trace)
        if stopped and not trace.rounds:
            status += "  \nNothing was committed before the Stop; the exports hold the prompt only."
        if chat_note:
            status += "  \n" + chat_note
        summary = render.summary_markdown(trace, reference=req.reference, task=req.task)
        return (html.escape(status, quote=False), render.spans_html(trace, note=note),
                _table(render.candidate_table(trace)), _table(render.proposal_table(trace)),
                charts.words_histogram(trace), trace.to_dict(), trace.text, summary,
                self._export(trace.to_json(indent=1), "json"), self._export(summary, "md"))

    def _export(self, text: str, ext: str) -> str:
        """Write an export file (named by its content) for a download button. Gradio copies it
        into its own cache, so files older than an hour are pruned here."""
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
        path = self.export_dir / f"adafuse-{'trace' if ext == 'json' else 'summary'}-{digest}.{ext}"
        path.write_text(text, encoding="utf-8")
        cutoff = time.time() - EXPORT_TTL_S
        for old in self.export_dir.glob("adafuse-*"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass                                # another request pruned it first
        return str(path)

    # ---- Stop and Run presses ---------------------------------------------------------------
    def stop(self, session) -> None:
        """Stop: the session's running decodes end after their current round and render their
        own end; with none running nothing changes."""
        self.sessions.stop(session)

    def announce_run(self, session, slots: int):
        """Run pressed, before the run is queued: the session's comparison gives way, and the
        status says what the run waits for, if anything."""
        waits_for = self.sessions.new_run(session, slots)
        return waits_for or gr.skip()

    # ---- comparison -------------------------------------------------------------------------
    def compare(self, trace_state, *inputs, session=None, progress=gr.Progress()):
        """AdaFuse (reusing the last run when it matches the inputs) against each model alone
        (greedy) and fixed-length rounds L = 1, 2, 3. Yields after each method. A Stop or a new
        Run of the session ends it after the current round, keeping the methods measured so far.
        Outputs: status, cards, chart, metrics table, summary, Markdown file, results state."""
        with _user_errors(), self.sessions.job(session, "compare") as job:
            req = self.parse(*inputs)
            try:
                lms = self.models_for(req, progress)
            except ModelLoadError as e:
                yield (html.escape(self._load_failed(e), quote=False),) + tuple(gr.skip() for _ in range(6))
                return
            t0 = time.monotonic()
            trace = _matching_trace(trace_state, req)
            if trace is None:
                yield ("Running AdaFuse…",) + tuple(gr.skip() for _ in range(6))
                trace = self.api.generate(lms, req.prompt, req.cfg, max_seconds=self.limits.time_limit_s,
                                          should_stop=job.should_stop)
                if job.ended_by:
                    yield (_ended_note(job, 0, 0),) + tuple(gr.skip() for _ in range(6))
                    return
            scorer = OutputScorer(lms, req.prompt, req.cfg.prompt_format)
            results = [compare.measure("AdaFuse", trace, scorer, req.task, req.reference)]
            steps = compare.plan(lms, req.cfg)
            note = ""
            for i, (name, subset, cfg) in enumerate(steps):
                left = self.limits.time_limit_s - (time.monotonic() - t0)
                if left <= 0:
                    note = (f"Stopped after the per-request time limit of {self.limits.time_limit_s:g} s; "
                            f"{len(steps) - i} method(s) not run.")
                    break
                yield self._compare_out(results, lms, trace, req, f"Running {name} ({i + 1}/{len(steps)})…",
                                        final=False)
                out = self.api.generate(subset, req.prompt, cfg, max_seconds=left, should_stop=job.should_stop)
                if job.ended_by:                   # a cut decode is not measured
                    note = _ended_note(job, len(results), len(steps) + 1)
                    yield self._compare_out(results, lms, trace, req, note, final=False)
                    return
                results.append(compare.measure(name, out, scorer, req.task, req.reference))
            done = f"**Done.** Compared {len(results)} methods in {time.monotonic() - t0:.1f} s."
            yield self._compare_out(results, lms, trace, req, note or done, final=True)

    def why_not_compare(self, trace_state, session) -> str:
        """Why the automatic comparison after a run should not start ('' when it should): the
        run was stopped, or Run was pressed again and that new run must not wait behind it."""
        if trace_state is None:          # the run never started (a model did not load)
            return "Not compared: the run did not start."
        if isinstance(trace_state, dict) and trace_state.get("stats", {}).get("stop_reason") == "cancelled":
            return "Not compared: the run was stopped."
        if self.sessions.run_asked_since_last_run(session):
            return "Comparison cancelled by a new run."
        return ""

    def _compare_out(self, results, lms, trace, req, status, final):
        models = [lm.name for lm in lms]
        cards = compare_cards_html(results)
        fig = charts.comparison_figure(results, models)
        table = _table(comparison_table(results))
        if not final:
            return (html.escape(status), cards, fig, table, gr.skip(), gr.skip(), gr.skip())
        summary = render.summary_markdown(trace, results, req.reference, req.task)
        return (html.escape(status), cards, fig, table, summary, self._export(summary, "md"),
                [r.to_dict() for r in results])


def no_chat_template_note(lms, prompt_format: str) -> str:
    """The chat format sends a model without a chat template the raw prompt (adafuse.state):
    say so, or the user reads its output as a chat answer."""
    raw = [lm.name for lm in lms if not getattr(lm.tokenizer, "chat_template", None)] if prompt_format == "chat" else []
    if len(raw) == 1:
        return f"{raw[0]} has no chat template: it gets the raw prompt."
    return f"{', '.join(raw)} have no chat template: they get the raw prompt." if raw else ""


def _ended_note(job, measured: int, total: int) -> str:
    what = "cancelled by a new run" if job.ended_by == NEW_RUN else "stopped"
    return f"Comparison {what}" + (f"; {measured} of {total} methods measured." if total else ".")


def _matching_trace(state, req: RunRequest) -> Trace | None:
    """The last run's trace when it was made from these very inputs."""
    if not isinstance(state, dict) or not state.get("rounds"):
        return None
    try:
        trace = Trace.from_dict(state)
    except (KeyError, TypeError, ValueError):
        return None
    want = req.cfg.to_dict()
    same = (trace.prompt == req.prompt and tuple(trace.models) == req.models and trace.mode == "adafuse"
            and all(_same(trace.settings.get(k), want[k]) for k in
                    ("tau", "max_words", "branches", "max_new_tokens", "prompt_format", "stop")))
    return trace if same and trace.stats.stop_reason not in ("time_limit", "cancelled", "") else None


def _same(a, b) -> bool:
    if isinstance(b, list):
        return list(a or []) == b
    if isinstance(b, float):
        return a is not None and math.isclose(float(a), b)
    return a == b


def comparison_table(results) -> tuple[list[str], list[list]]:
    metric_names = []
    for r in results:
        metric_names += [k for k in r.metrics if k not in metric_names]
    best = compare.best_index(results)
    headers = ["method", "output", "objective (mean NLL)", "seconds", "forward passes", "note"] + metric_names
    rows = [[r.name, r.text, None if math.isnan(r.objective) else round(r.objective, 4), round(r.seconds, 2),
             sum(r.forward_passes.values()), _note(r, i == best)]
            + [round(r.metrics[k], 4) if k in r.metrics else None for k in metric_names]
            for i, r in enumerate(results)]
    return headers, rows


BEST_NOTE = "★ lowest objective"


def _note(result, best: bool) -> str:
    return BEST_NOTE if best else f"⚠ {result.flag}" if result.flag else ""


def compare_cards_html(results) -> str:
    """The methods' outputs side by side (escaped): ★ on the lowest ensemble objective of the
    outputs that are not degenerate, ⚠ and the reason on those that are (compare.best_index)."""
    best = compare.best_index(results)
    cards = []
    for i, r in enumerate(results):
        metrics = "".join(f" · {html.escape(k)} {v:.2f}" for k, v in r.metrics.items())
        cls = "af-card af-best" if i == best else "af-card af-flagged" if r.flag else "af-card"
        note = _note(r, i == best)
        mark = f' <span class="af-card-note">{html.escape(note)}</span>' if note else ""
        cards.append(f'<div class="{cls}"><h4>{html.escape(r.name)}{mark}</h4>'
                     f'<div class="af-card-text">{html.escape(r.text.strip()) or "<i>(empty)</i>"}</div>'
                     f'<div class="af-card-meta">objective {render.fmt(r.objective)} · {r.seconds:.2f} s · '
                     f'{sum(r.forward_passes.values())} forward passes{metrics}</div></div>')
    return '<div class="af-compare">' + "".join(cards) + "</div>"


def toast(message: str, title: str = "Error", print_exception: bool = False, **kwargs) -> gr.Error:
    """An error toast for the user, to raise. Gradio renders a toast's text as HTML, and messages
    carry user- and model-supplied strings (folder names, prompts, model ids): escape them. Paths
    show no server folder. Gradio 6's page heads a toast with its level ("Error", "Warning") and
    shows no title, so the title leads the text; API clients get it as `title` too. A user's error
    is no server fault: Gradio logs no traceback for it."""
    return gr.Error(_titled(message, title), title=title, print_exception=print_exception, **kwargs)


def warn(message: str, title: str) -> None:
    """A warning toast that does not end the request (see toast)."""
    gr.Warning(_titled(message, title), title=title)


def _titled(message: str, title: str) -> str:
    text = html.escape(hide_paths(message), quote=False)
    return text if title == "Error" else f"{title}: {text}"


class _user_errors:
    """Turn failures into clear UI messages; free memory after an out-of-memory error."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (gr.Error, GeneratorExit)) or not isinstance(exc, Exception):
            return False
        if isinstance(exc, InputError):
            raise toast(str(exc), title="Invalid input") from exc
        if isinstance(exc, ModelLoadError):
            raise toast(str(exc), title="Model failed to load") from exc
        if isinstance(exc, AdafuseError):
            raise toast(str(exc), title="Decoding failed") from exc
        if _is_oom(exc):
            free_memory()
            raise toast("Out of memory while decoding. Caches were freed; try fewer max new tokens, "
                        "fewer branches or smaller models.", title="Out of memory") from exc
        log.exception("request failed")
        raise toast(f"{type(exc).__name__}: {exc}", title="Unexpected error") from exc


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
        return isinstance(exc, torch.OutOfMemoryError)
    except (ImportError, AttributeError):
        return "out of memory" in str(exc).lower()
