"""AdaFuse Studio: run adaptive ensemble decoding on a chosen model pair and inspect every round.

Layout and wiring only; the callbacks live in adafuse/ui/callbacks.py and call the library.
`python app.py` serves on 0.0.0.0:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override it).
Operator settings (environment): ADAFUSE_ALLOW_CUSTOM_MODELS=1 accepts HF ids and local paths,
ADAFUSE_MAX_NEW_TOKENS (512), ADAFUSE_TIME_LIMIT seconds per request (180),
ADAFUSE_QUEUE_SIZE (16), ADAFUSE_CONCURRENCY (1 on CPU, 2 on GPU), ADAFUSE_PRELOAD=1 loads the
default pair at start-up, ADAFUSE_DEVICE / ADAFUSE_DTYPE (auto).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

import adafuse
from adafuse.ui import charts, render
from adafuse.ui.callbacks import INPUT_NAMES, NONE_CHOICE, Studio, compare_gpu_duration, gpu_duration
from adafuse.ui.model_store import custom_models_allowed
from adafuse.ui.spaces_shim import gpu

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_TASK = "Open-domain QA (4-shot)"


def concurrency_limit() -> int:
    """Decodes at once. On CPU one decode already uses every core; on a GPU two fit beside
    each other for the small and 7-8B presets."""
    if os.environ.get("ADAFUSE_CONCURRENCY"):
        return max(1, int(os.environ["ADAFUSE_CONCURRENCY"]))
    import torch
    return 2 if torch.cuda.is_available() else 1


def header_html() -> str:
    logo = (ASSETS / "logo.svg").read_text(encoding="utf-8")
    return (f'<div class="af-header">{logo}<div><h1>AdaFuse Studio</h1>'
            "<p>Several LLMs with different tokenizers decode one text together, word by word: each round "
            "every model proposes a span, the span with the lowest mean NLL across the models wins. "
            "Hover a span to see its round.</p></div></div>")


def build(studio: Studio) -> gr.Blocks:
    presets = adafuse.PRESETS
    allow_custom = custom_models_allowed()
    model_choices = [(f"{n}{' (embedded)' if p.embedded else ''}", n) for n, p in presets.items()]
    first = studio.fill_task(DEFAULT_TASK)

    with gr.Blocks(title="AdaFuse Studio", fill_width=True, delete_cache=(3600, 3600)) as demo:
        gr.HTML(header_html(), js_on_load=None)
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
                                    info="at a word start below τ a model stops its span (and branches if B > 1)")
                    with gr.Row():
                        max_words = gr.Slider(1, 5, value=3, step=1, label="M: max words per span")
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
                with gr.Row():
                    run_btn = gr.Button("Run AdaFuse", variant="primary", elem_id="run")
                    compare_btn = gr.Button("Compare", elem_id="compare")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                gr.Examples([[name] for name in studio.tasks], inputs=[task_preset], label="Examples")

            with gr.Column(scale=7, min_width=480):
                status = gr.Markdown("Pick models and a prompt, then **Run AdaFuse**. The first run loads "
                                     "(and, once, converts) the models.", elem_id="status")
                spans = gr.HTML(render.spans_html(None), js_on_load=None, elem_id="spans")
                with gr.Tabs():
                    with gr.Tab("Rounds", id="rounds"):
                        candidates = gr.Dataframe(label="Candidates of every round (✓ = winner, lowest fused score)",
                                                  interactive=False, wrap=True, max_height=420,
                                                  elem_id="candidates")
                        proposals = gr.Dataframe(label="Each model's proposal: greedy words and first-token margins",
                                                 interactive=False, wrap=True, max_height=320,
                                                 elem_id="proposals")
                        histogram = gr.Plot(charts.words_histogram(None), label="Words per round",
                                            elem_id="histogram")
                    with gr.Tab("Compare", id="compare-tab"):
                        compare_status = gr.Markdown("Runs after each AdaFuse run (or press **Compare**).")
                        compare_cards = gr.HTML(js_on_load=None, elem_id="compare-cards")
                        compare_plot = gr.Plot(label="Methods compared", show_label=False, elem_id="compare-plot")
                        compare_table = gr.Dataframe(label="Methods", interactive=False, wrap=True)
                    with gr.Tab("Export", id="export"):
                        output_text = gr.Textbox(label="Output text", lines=3, buttons=["copy"])
                        summary = gr.Code(label="Shareable summary (Markdown)", language="markdown",
                                          lines=12, buttons=["copy", "download"])
                        with gr.Row():
                            json_file = gr.DownloadButton("Download trace (JSON)", elem_id="download-json")
                            md_file = gr.DownloadButton("Download summary (Markdown)", elem_id="download-md")

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

        task_preset.change(studio.fill_task, task_preset,
                           [prompt, reference, prompt_format, stop, max_new_tokens, task], api_name="task_preset")
        run_fn = gpu(duration=gpu_duration)(studio.run)
        compare_fn = gpu(duration=compare_gpu_duration)(studio.compare)
        common = dict(concurrency_id="decode", concurrency_limit=concurrency_limit())
        run_event = run_btn.click(run_fn, decode_inputs, run_outputs, api_name="run", **common)
        prompt_submit = prompt.submit(run_fn, decode_inputs, run_outputs, api_visibility="private", **common)
        chained = []
        for ev in (run_event, prompt_submit):
            chained.append(ev.success(maybe_compare(compare_fn), [auto_compare, trace_state] + decode_inputs,
                                      compare_outputs, api_visibility="private", **common))
        compare_event = compare_btn.click(compare_fn, [trace_state] + decode_inputs, compare_outputs,
                                          api_name="compare", **common)
        stop_btn.click(lambda: "**Stopped.** The output so far is kept; nothing is left running.", None,
                       status, cancels=[run_event, prompt_submit, compare_event] + chained, queue=False,
                       api_name="stop")
    return demo


def maybe_compare(compare_fn):
    def run(auto, trace, *inputs, progress=gr.Progress()):
        if not auto:
            yield tuple(gr.skip() for _ in range(7))
            return
        yield from compare_fn(trace, *inputs, progress=progress)
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
                css_paths=[ASSETS / "style.css"], theme=gr.themes.Soft(),
                favicon_path=str(ASSETS / "logo.svg"), show_error=True)


if __name__ == "__main__":
    main()
