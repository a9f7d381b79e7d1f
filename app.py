"""AdaFuse Studio: run adaptive ensemble decoding on a chosen model pair and inspect every round.

Layout and wiring only; the callbacks live in adafuse/ui/callbacks.py and call the library.
`python app.py` serves on 0.0.0.0:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override it).
Operator settings (environment): ADAFUSE_ALLOW_CUSTOM_MODELS=1 accepts HF ids and local paths,
ADAFUSE_MAX_NEW_TOKENS (512), ADAFUSE_TIME_LIMIT seconds per request (180),
ADAFUSE_QUEUE_SIZE (16), ADAFUSE_CONCURRENCY (1 on CPU, 2 on GPU), ADAFUSE_PRELOAD=1 loads the
default pair at start-up, ADAFUSE_DEVICE / ADAFUSE_DTYPE (auto), ADAFUSE_RUNS_ROOT a folder the
Cases view may open runs from by path (off unless set: a public deployment reveals no files).
"""
from __future__ import annotations

import functools
import inspect
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

import adafuse
from adafuse import render
from adafuse.ui import cases as cases_ui
from adafuse.ui import charts
from adafuse.ui.callbacks import INPUT_NAMES, NONE_CHOICE, Studio, compare_gpu_duration, gpu_duration
from adafuse.ui.model_store import custom_models_allowed
from adafuse.ui.paths import runs_root
from adafuse.ui.spaces_shim import gpu

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_TASK = "Open-domain QA (4-shot)"
CANDIDATES_LABEL = "Candidates of every round (✓ = winner, lowest fused score)"
PROPOSALS_LABEL = "Each model's proposal: greedy words and first-token margins"


def concurrency_limit() -> int:
    """Decodes at once. On CPU one decode already uses every core; on a GPU two fit beside
    each other for the small and 7-8B presets."""
    if os.environ.get("ADAFUSE_CONCURRENCY"):
        return max(1, int(os.environ["ADAFUSE_CONCURRENCY"]))
    import torch
    return 2 if torch.cuda.is_available() else 1


def model_labels(presets) -> list[tuple[str, str]]:
    """The model boxes' choices: each preset, marked embedded, or not available here (not
    installed, not cached and the hub out of reach), so that a user sees it before choosing it."""
    hub = adafuse.models.hub_reachable()   # one probe for all presets
    out = []
    for name, preset in presets.items():
        note = " (not available here)" if adafuse.unavailable(name, hub) else " (embedded)" if preset.embedded else ""
        out.append((name + note, name))
    return out


def header_html() -> str:
    logo = (ASSETS / "logo.svg").read_text(encoding="utf-8")
    return (f'<div class="af-header">{logo}<div><h1>AdaFuse Studio</h1>'
            "<p>Several LLMs with different tokenizers decode one text together, word by word: each round "
            "every model proposes a span, the span with the lowest mean NLL across the models wins. "
            "Hover a span to see its round. New here? <b>Cases</b> shows curated decisions from the project's "
            "own evaluation runs without running anything, and opens your own runs.</p></div></div>")


def build(studio: Studio) -> gr.Blocks:
    presets = adafuse.PRESETS
    allow_custom = custom_models_allowed()
    model_choices = model_labels(presets)
    first = studio.fill_task(DEFAULT_TASK)

    with gr.Blocks(title="AdaFuse Studio", fill_width=True, delete_cache=(3600, 3600)) as demo:
        gr.HTML(header_html(), js_on_load=None)
        with gr.Tabs(elem_id="views") as views:
            with gr.Tab("Studio", id="studio"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=340):
                        with gr.Group():
                            model_a = gr.Dropdown(model_choices, value=adafuse.DEFAULT_PAIR[0], label="Model A",
                                                  allow_custom_value=allow_custom, elem_id="model-a")
                            model_b = gr.Dropdown(model_choices, value=adafuse.DEFAULT_PAIR[1], label="Model B",
                                                  allow_custom_value=allow_custom, elem_id="model-b")
                            model_c = gr.Dropdown([NONE_CHOICE] + model_choices, value=NONE_CHOICE,
                                                  label="Model C (optional)", allow_custom_value=allow_custom)
                        if allow_custom:
                            gr.Markdown("Custom Hugging Face ids and local folders are allowed here "
                                        "(type them into a model box); remote code is never trusted.")
                        task_preset = gr.Dropdown(list(studio.tasks), value=DEFAULT_TASK, label="Task preset",
                                                  elem_id="task-preset")
                        prompt = gr.Textbox(first[0], label="Prompt", lines=9, max_lines=24, elem_id="prompt")
                        reference = gr.Textbox(first[1], label="Reference answer (optional; scores the comparison; "
                                               "several accepted answers separated by ' | ')", lines=1)
                        with gr.Accordion("Decoding", open=True):
                            tau = gr.Slider(0, 1, value=0.7, step=0.05, label="τ: confidence margin p(1) − p(2)",
                                            info="at a word start below τ a model stops its span "
                                                 "(and branches if B > 1)")
                            with gr.Row():
                                max_words = gr.Slider(1, 5, value=3, step=1, label="M: max words per span",
                                                      elem_id="max-words")
                                branches = gr.Slider(1, 5, value=1, step=1, label="B: branches at uncertain words")
                            with gr.Row():
                                max_new_tokens = gr.Slider(1, studio.limits.max_new_tokens, value=first[4], step=1,
                                                           label="Max new tokens", elem_id="max-new-tokens")
                                prompt_format = gr.Radio(["raw", "chat"], value=first[2], label="Prompt format",
                                                         elem_id="prompt-format")
                            stop = gr.Textbox(first[3], label="Stop strings (one per line; \\n for a newline)", lines=2)
                            task = gr.Radio(["qa", "math", "translation", "chat"], value=first[5],
                                            label="Task kind (picks the metrics)")
                        auto_compare = gr.Checkbox(True, label="Compare with single models and fixed-length rounds "
                                                               "after each run")
                        gr.Examples([[name] for name in studio.tasks], inputs=[task_preset], label="Examples")

                    with gr.Column(scale=7, min_width=480):
                        # the buttons sit above the status and output they change: next to them on a
                        # desktop's first screen, and just above them on a phone (one row there too)
                        with gr.Row():
                            run_btn = gr.Button("Run AdaFuse", variant="primary", elem_id="run", min_width=120)
                            compare_btn = gr.Button("Compare", elem_id="compare", min_width=80)
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", min_width=80)
                        # labels unseen on the page name the API's outputs
                        status = gr.Markdown("Pick models and a prompt, then **Run AdaFuse**. The first run loads "
                                             "(and, once, converts) the models.", label="Status", show_label=False,
                                             elem_id="status")
                        spans = gr.HTML(render.spans_html(None), label="Output spans (HTML)", js_on_load=None,
                                        elem_id="spans")
                        with gr.Tabs():
                            with gr.Tab("Rounds", id="rounds"):
                                candidates = gr.Dataframe(label=CANDIDATES_LABEL, interactive=False, wrap=True,
                                                          max_height=420, elem_id="candidates")
                                proposals = gr.Dataframe(label=PROPOSALS_LABEL, interactive=False, wrap=True,
                                                         max_height=320, elem_id="proposals")
                                histogram = gr.Plot(charts.words_histogram(None), label="Words per round",
                                                    elem_id="histogram")
                            with gr.Tab("Compare", id="compare-tab"):
                                compare_status = gr.Markdown("Runs after each AdaFuse run (or press **Compare**).",
                                                             label="Comparison status", show_label=False,
                                                             elem_id="compare-status")
                                compare_cards = gr.HTML(label="Methods side by side (HTML)", js_on_load=None,
                                                        elem_id="compare-cards")
                                compare_plot = gr.Plot(label="Methods compared", show_label=False,
                                                       elem_id="compare-plot")
                                compare_table = gr.Dataframe(label="Methods", interactive=False, wrap=True,
                                                             elem_id="compare-table")
                            with gr.Tab("Export", id="export"):
                                output_text = gr.Textbox(label="Output text", lines=3, buttons=["copy"],
                                                         elem_id="output-text")
                                summary = gr.Code(label="Shareable summary (Markdown)", language="markdown",
                                                  lines=12, buttons=["copy", "download"])
                                with gr.Row():
                                    json_file = gr.DownloadButton("Download trace (JSON)", elem_id="download-json")
                                    md_file = gr.DownloadButton("Download summary (Markdown)", elem_id="download-md")

            with gr.Tab("Cases", id="cases", elem_id="cases-tab"):
                cases = cases_layout()

        trace_state = gr.State(None)
        results_state = gr.State(None)
        inputs = dict(model_a=model_a, model_b=model_b, model_c=model_c, prompt=prompt, tau=tau,
                      max_words=max_words, branches=branches, max_new_tokens=max_new_tokens, stop=stop,
                      prompt_format=prompt_format, task=task, reference=reference)
        decode_inputs = [inputs[n] for n in INPUT_NAMES]
        run_outputs = [status, spans, candidates, proposals, histogram, trace_state, output_text, summary,
                       json_file, md_file]
        compare_outputs = [compare_status, compare_cards, compare_plot, compare_table, summary, md_file,
                           results_state]

        # The callbacks validate every input themselves, naming it (the API can send any JSON);
        # Gradio's own checks would refuse first, naming no parameter, with a traceback in the log.
        raw = dict(preprocess=False)
        task_preset.change(studio.fill_task, task_preset,
                           [prompt, reference, prompt_format, stop, max_new_tokens, task], api_name="task_preset",
                           **raw)
        for box in (model_a, model_b, model_c):
            box.change(studio.model_picked, box, status, api_visibility="private")
        for slider in (tau, max_words, branches, max_new_tokens):
            clamp_while_typing(slider)
        slots = concurrency_limit()

        # Stop and Run reach this visitor's running decodes, which end after their current round
        # and show how they ended; not Gradio's `cancels=`, which kills a decode mid-stream.
        def stop(request: gr.Request):
            studio.stop(request.session_hash)

        def announce_run(request: gr.Request):
            return studio.announce_run(request.session_hash, slots)

        def forget(request: gr.Request):
            studio.sessions.forget(request.session_hash)

        stop_btn.click(stop, None, None, queue=False, api_name="stop")
        # registered before the runs: the browser sends one trigger's events in this order
        for press in (run_btn.click, prompt.submit, cases.rerun.click):
            press(announce_run, None, status, queue=False, api_visibility="private")
        demo.unload(forget)
        run_fn = in_session(gpu(duration=gpu_duration)(studio.run), INPUT_NAMES)
        compare_fn = gpu(duration=compare_gpu_duration)(studio.compare)
        after_run = compare_after_run(studio, compare_fn)
        common = dict(concurrency_id="decode", concurrency_limit=slots, **raw)
        run_event = run_btn.click(run_fn, decode_inputs, run_outputs, api_name="run", **common)
        prompt_submit = prompt.submit(run_fn, decode_inputs, run_outputs, api_visibility="private", **common)
        for ev in (run_event, prompt_submit):
            ev.success(after_run, [auto_compare, trace_state] + decode_inputs, compare_outputs,
                       api_visibility="private", **common)
        compare_btn.click(in_session(compare_fn, ("trace",) + INPUT_NAMES), [trace_state] + decode_inputs,
                          compare_outputs, api_name="compare", **common)
        # Cases: a selected item re-runs live in the Studio with the chosen tau / M / B
        rerun = functools.partial(cases_ui.rerun_inputs, presets=presets,
                                  max_tokens_limit=studio.limits.max_new_tokens, allow_custom=allow_custom)
        rerun_fill = cases.rerun.click(forget_preset(rerun), [cases.run, cases.case, cases.focus, cases.tau,
                                                              cases.max_words, cases.branches],
                                       decode_inputs + [views, task_preset], api_visibility="private")
        rerun_run = rerun_fill.success(run_fn, decode_inputs, run_outputs, api_visibility="private", **common)
        rerun_run.success(after_run, [auto_compare, trace_state] + decode_inputs, compare_outputs,
                          api_visibility="private", **common)
        wire_cases(cases)
    return demo


def cases_layout() -> SimpleNamespace:
    """The Cases view: where to open results from, the filters, a page of items, and the selected
    item's methods side by side with its trace drawn like a live run. Opens on the gallery."""
    root = runs_root()       # None: opening folders by path is off (ADAFUSE_RUNS_ROOT)
    run = cases_ui.gallery()
    focus = run.default_focus()
    count, table, number = cases_ui.list_view(run, [], cases_ui.ALL_TASKS, "", "order", focus, False, 1)
    c = SimpleNamespace(run=gr.State(run), case=gr.State(None))
    c.source = gr.HTML(cases_ui.source_html(run), elem_id="cases-source")
    with gr.Accordion("Open an eval run (its --out folder or per-item JSONL files) or a trace JSON", open=False,
                      elem_id="cases-open-box"):
        with gr.Row(equal_height=True):
            c.folder = gr.Textbox(label="Run folder(s) or files on this server, relative to its runs folder", lines=1,
                                  placeholder="runs/demo   (several: one per line)", visible=root is not None,
                                  elem_id="cases-folder", scale=4)
            c.open = gr.Button("Open", visible=root is not None, elem_id="cases-open", scale=1)
            c.back = gr.Button("Back to the gallery", elem_id="cases-gallery", scale=1)
        c.upload = gr.File(label="…or upload per-item JSONL files (one per method) or a trace JSON",
                           file_count="multiple", file_types=[".jsonl", ".json"], elem_id="cases-upload")
    with gr.Row(equal_height=False):
        c.outcomes = gr.CheckboxGroup(cases_ui.OUTCOME_CHOICES, label="Outcome (all checked must hold)",
                                      elem_id="cases-outcomes", scale=3)
        with gr.Column(scale=2, min_width=300):
            with gr.Row():
                c.task = gr.Dropdown(cases_ui.task_choices(run), value=cases_ui.ALL_TASKS, label="Task",
                                     elem_id="cases-task")
                c.sort = gr.Dropdown(cases_ui.SORT_CHOICES, value="order", label="Sort", elem_id="cases-sort")
            with gr.Row():
                c.search = gr.Textbox(label="Search", placeholder="words in the question, answers or reference",
                                      elem_id="cases-search")
                c.focus = gr.Dropdown(cases_ui.method_choices(run), value=focus, label="Inspect method",
                                      elem_id="cases-focus")
    c.count = gr.Markdown(count, elem_id="cases-count")
    c.table = gr.Dataframe(table["value"], interactive=False, wrap=True, max_height=430, elem_id="cases-table",
                           column_widths=table["column_widths"], label="Items (click a row to inspect it)")
    with gr.Row(elem_classes="af-pager"):
        c.prev = gr.Button("◀ Previous page", size="sm", elem_id="cases-prev", scale=0)
        c.page = gr.Number(number, show_label=False, precision=0, minimum=1, elem_id="cases-page", scale=0,
                           min_width=80)
        c.next = gr.Button("Next page ▶", size="sm", elem_id="cases-next", scale=0)
        c.every = gr.Checkbox(False, label="every method's answer in the list (not only the inspected one and "
                                           "the single models)", elem_id="cases-every")
    _, detail, spans, candidates, proposals = cases_ui.empty_detail()
    c.detail = gr.HTML(detail, js_on_load=None, elem_id="cases-detail")
    c.spans = gr.HTML(spans, js_on_load=None, elem_id="cases-spans")
    with gr.Row(equal_height=True):
        c.tau = gr.Slider(0, 1, value=0.7, step=0.05, label="τ", min_width=160, elem_id="cases-tau")
        c.max_words = gr.Slider(1, 5, value=3, step=1, label="M", min_width=160, elem_id="cases-m")
        c.branches = gr.Slider(1, 5, value=1, step=1, label="B", min_width=160, elem_id="cases-b")
        for slider in (c.tau, c.max_words, c.branches):
            clamp_while_typing(slider)
        c.rerun = gr.Button("What if? Re-run this item live with this τ / M / B", variant="primary",
                            elem_id="cases-rerun", min_width=220)
    with gr.Tabs():
        with gr.Tab("Candidates", id="cases-candidates-tab"):
            c.candidates = gr.Dataframe(candidates, label=CANDIDATES_LABEL, interactive=False, wrap=True,
                                        max_height=420, elem_id="cases-candidates")
        with gr.Tab("Proposals", id="cases-proposals-tab"):
            c.proposals = gr.Dataframe(proposals, label=PROPOSALS_LABEL, interactive=False, wrap=True,
                                       max_height=320, elem_id="cases-proposals")
    return c


def wire_cases(c: SimpleNamespace) -> None:
    private = dict(api_visibility="private")
    query = [c.run, c.outcomes, c.task, c.search, c.sort, c.focus, c.every]
    listed = [c.count, c.table, c.page]
    detail = [c.case, c.detail, c.spans, c.candidates, c.proposals]
    opened = [c.run, c.source, c.task, c.focus, c.outcomes, c.search, c.sort, c.every] + listed + detail
    c.open.click(cases_ui.on_open_folder, c.folder, opened, **private)
    c.folder.submit(cases_ui.on_open_folder, c.folder, opened, **private)
    c.upload.upload(cases_ui.on_upload, c.upload, opened, **private)
    c.back.click(cases_ui.on_gallery, None, opened, **private)
    first_page = functools.partial(cases_ui.list_view, number=1)
    for box in (c.outcomes, c.task, c.sort, c.every):
        box.input(first_page, query, listed, **private)
    c.search.submit(first_page, query, listed, **private)
    c.search.blur(first_page, query, listed, **private)
    c.page.submit(cases_ui.list_view, query + [c.page], listed, **private)
    c.prev.click(functools.partial(cases_ui.list_view, step=-1), query + [c.page], listed, **private)
    c.next.click(functools.partial(cases_ui.list_view, step=1), query + [c.page], listed, **private)
    shown = detail + [c.tau, c.max_words, c.branches]
    c.table.select(cases_ui.on_select, [c.run, c.focus], shown, **private)
    # another method inspected: new trace summaries for the list, and that method's trace
    c.focus.input(first_page, query, listed, **private).then(cases_ui.show_case, [c.run, c.focus, c.case], shown,
                                                             **private)


def clamp_while_typing(slider: gr.Slider) -> None:
    """Gradio clamps a slider's number box to the slider's range only when the box loses focus:
    typing 9 into M (1 to 5) left 9 in the box beside a slider at 5. Clamp it as it is typed, in
    the page (an emptied box is left empty, to be typed into)."""
    lo, hi = slider.minimum, slider.maximum
    slider.input(None, slider, slider, queue=False, api_visibility="private",
                 js=f"(v) => (v === null || v === '' || isNaN(v)) ? v : Math.min(Math.max(v, {lo}), {hi})")


def forget_preset(rerun):
    """A what-if re-run fills the Studio from a Cases item: the task preset box, which named the
    preset of the earlier prompt, is emptied (its change then fills nothing)."""
    def fill(*args):
        return (*rerun(*args), None)
    return fill


def in_session(decode, names):
    """Gradio hands a callback its request only through a parameter annotated gr.Request; the
    Studio takes the session id, by which Stop and a new Run find this visitor's decodes.
    Gradio names an endpoint's parameters after its callback's: `names` stand for *inputs."""
    def run(request: gr.Request, *inputs, progress=gr.Progress()):
        yield from decode(*inputs, session=request.session_hash, progress=progress)
    sig = inspect.signature(run)
    named = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    run.__signature__ = sig.replace(parameters=[sig.parameters["request"], *named, sig.parameters["progress"]])
    return run


def compare_after_run(studio: Studio, compare_fn):
    """The automatic comparison: not when unchecked, after a stopped run, or once Run was pressed
    again (checked here, before compare_fn asks ZeroGPU for a GPU)."""
    def run(request: gr.Request, auto, trace, *inputs, progress=gr.Progress()):
        why_not = studio.why_not_compare(trace, request.session_hash) if auto else ""
        if not auto or why_not:
            yield (why_not or gr.skip(),) + tuple(gr.skip() for _ in range(6))
            return
        yield from compare_fn(trace, *inputs, session=request.session_hash, progress=progress)
    return run


def main():
    studio = Studio()
    if os.environ.get("ADAFUSE_PRELOAD", "1" if os.environ.get("SPACE_ID") else "") == "1":
        threading.Thread(target=lambda: studio.store.get(list(adafuse.DEFAULT_PAIR)), daemon=True).start()
    demo = build(studio)
    demo.queue(max_size=int(os.environ.get("ADAFUSE_QUEUE_SIZE", 16)),
               default_concurrency_limit=concurrency_limit())
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                css_paths=[ASSETS / "style.css"], head=f"<script>{(ASSETS / 'hovercards.js').read_text()}</script>",
                theme=gr.themes.Soft(), favicon_path=str(ASSETS / "logo.svg"), show_error=True)


if __name__ == "__main__":
    main()
