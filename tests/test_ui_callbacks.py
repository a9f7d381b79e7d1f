"""The app's callbacks with the real embedded pair: validation, streaming, tables, comparison,
export, errors and recovery. Small max_new_tokens keeps them quick on two CPU cores."""
import json
import math

import gradio as gr
import pandas as pd
import pytest
import torch

import adafuse
from adafuse.trace import Candidate, Proposal, Round, Stats, Trace
from adafuse.ui import callbacks
from adafuse.ui.callbacks import Limits, Studio, parse_request
from adafuse.ui.model_store import ModelStore

A, B = "smollm2-135m-instruct", "gemma3-270m"    # the test pair (conftest.lms)
QA = "Open-domain QA (4-shot)"


def inputs(studio, task=QA, **over):
    prompt, reference, fmt, stop, _, kind = studio.fill_task(task)
    d = dict(model_a=A, model_b=B, model_c="(none)", prompt=prompt, tau=0.7, max_words=3, branches=1,
             max_new_tokens=6, stop=stop, prompt_format=fmt, task=kind, reference=reference)
    d.update(over)
    return [d[n] for n in callbacks.INPUT_NAMES]


@pytest.fixture(scope="module")
def loads():
    return []


@pytest.fixture(scope="module")
def studio(lms, loads, tmp_path_factory):
    by_name = {lm.name: lm for lm in lms}

    def load_one(name, progress=None):
        loads.append(name)
        if name not in by_name:
            return adafuse.load_model(name)     # a real load attempt (fails offline for hub ids)
        return by_name[name]
    return Studio(store=ModelStore(load_one), limits=Limits(max_new_tokens=64, time_limit_s=900),
                  export_dir=str(tmp_path_factory.mktemp("exports")))


def drain(gen):
    return list(gen)


# ---- validation (no decoding) -----------------------------------------------------------------

@pytest.mark.parametrize("over, message", [
    (dict(prompt="   "), "prompt is empty"),
    (dict(tau=1.5), "tau must be in [0, 1]"),
    (dict(tau=float("nan")), "tau must be a finite number"),
    (dict(max_words=6), "max_words (M) must be between 1 and 5"),
    (dict(branches=0), "branches (B) must be between 1 and 16"),
    (dict(max_new_tokens=100), "max_new_tokens must be between 1 and 64"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be an integer"),
    (dict(prompt_format="xml"), "prompt_format must be raw or chat, got 'xml'"),
    (dict(model_b="(none)"), "at least two different models"),
    (dict(model_b=A), "selected twice"),
    (dict(model_b="evil/model"), "ADAFUSE_ALLOW_CUSTOM_MODELS=1"),
    # the API sends JSON: a prompt that is not text is refused, not decoded as its str()
    (dict(prompt=["Q: who?", "A:"]), "prompt must be text (a string), got list"),
    (dict(prompt=42), "prompt must be text (a string), got int 42"),
    (dict(stop=7), "stop must be text"),
    (dict(reference=["a"]), "reference must be text"),
])
def test_server_side_validation(studio, over, message, monkeypatch):
    monkeypatch.delenv("ADAFUSE_ALLOW_CUSTOM_MODELS", raising=False)
    with pytest.raises(adafuse.InputError) as e:
        studio.parse(*inputs(studio, **over))
    assert message in str(e.value)
    # the same inputs through the callback become a clear UI error, not a traceback
    with pytest.raises(gr.Error) as ge:
        drain(studio.run(*inputs(studio, **over)))
    assert message in ge.value.message and ge.value.title == "Invalid input"


def test_custom_models_only_when_the_operator_allows(studio, monkeypatch):
    monkeypatch.setenv("ADAFUSE_ALLOW_CUSTOM_MODELS", "1")
    req = studio.parse(*inputs(studio, model_b="someorg/some-model"))
    assert req.models == (A, "someorg/some-model")
    with pytest.raises(adafuse.InputError, match="neither a model preset"):
        studio.parse(*inputs(studio, model_b="not a model id"))


def test_parse_request_normalises(studio):
    req = parse_request(adafuse.PRESETS, Limits(), A, B, None, "Hi", "0.5", 2.0, 1, "8", "\\nQ:\n", "raw",
                        None, None)
    assert req.cfg.tau == 0.5 and req.cfg.max_words == 2 and req.cfg.max_new_tokens == 8
    assert req.cfg.stop == ("\nQ:",) and req.task == "chat" and req.reference == ""
    with pytest.raises(adafuse.InputError, match="task must be one of qa, math, translation, chat, got 'bogus'"):
        parse_request(adafuse.PRESETS, Limits(), A, B, None, "Hi", 0.7, 3, 1, 8, "", "raw", "bogus", None)


def test_fill_task_and_gpu_duration(studio):
    prompt, ref, fmt, stop, mnt, kind = studio.fill_task("Grade-school math (step by step)")
    assert "Let's think step by step" in prompt and ref == "7" and kind == "math" and fmt == "raw"
    with pytest.raises(gr.Error):
        studio.fill_task("nope")
    short = callbacks.gpu_duration(*inputs(studio, max_new_tokens=16))
    long = callbacks.gpu_duration(*inputs(studio, max_new_tokens=256, model_c=A))
    assert 0 < short < long <= 300
    assert short < callbacks.compare_gpu_duration(None, *inputs(studio, max_new_tokens=16)) <= 300


# ---- with the real models -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def qa_run(studio):
    return drain(studio.run(*inputs(studio, max_new_tokens=3)))


def test_run_streams_and_renders_the_trace(qa_run, lms):
    assert len(qa_run) >= 3                           # loading status, live round(s), final
    status, spans, cands, props, hist, state, text, summary, json_path, md_path = qa_run[-1]
    trace = Trace.from_dict(state)
    assert trace.models == [A, B] and trace.stats.stop_reason in ("stop_string", "max_new_tokens", "eos")
    assert text == trace.text and text.strip()
    assert "Leonardo" in text                         # both models know who painted the Mona Lisa
    # spans: one coloured bracket per committed round, each with its round's candidates on hover
    assert spans.count("data-round=") == len([s for s in trace.spans() if s])
    assert "af-tip" in spans and "Round 1<" in spans and "Round 0" not in spans   # counted from 1
    # candidate table: a winner per round, each model's NLL, fused score = their mean
    assert isinstance(cands, pd.DataFrame)
    assert list(cands.columns[4:7]) == [f"NLL {A}", f"NLL {B}", "fused score"]
    assert (cands["winner"] == "✓").sum() == len(trace.rounds)
    for _, row in cands.iterrows():
        assert row["fused score"] == pytest.approx((row[f"NLL {A}"] + row[f"NLL {B}"]) / 2, abs=2e-4)
    winners = cands[cands["winner"] == "✓"]
    assert "".join(winners["candidate"]).startswith(repr(trace.text)[1:-1][:5])
    assert set(props["model"]) == {A, B} and len(props) == 2 * len(trace.rounds)
    # live yields show the cursor; the final one does not
    assert any("af-cursor" in y[1] for y in qa_run[1:-1] if isinstance(y[1], str))
    assert "af-cursor" not in spans and status.startswith("**Done.**")
    # exports: the engine's JSON schema and a Markdown summary
    assert json.loads(open(json_path, encoding="utf-8").read()) == json.loads(trace.to_json())
    md = open(md_path, encoding="utf-8").read()
    assert md == summary and trace.bracketed() in md
    assert list(hist.data[0].x) == sorted(set(trace.words_per_round()))


def test_same_request_gives_same_trace_even_after_a_cancelled_one(studio, qa_run, loads):
    first = Trace.from_dict(qa_run[-1][5])
    n_loads = len(loads)
    # a request cancelled after its first round (what Stop or a disconnect does to the generator)
    gen = studio.run(*inputs(studio, max_new_tokens=3))
    next(gen), next(gen)
    gen.close()
    again = Trace.from_dict(drain(studio.run(*inputs(studio, max_new_tokens=3)))[-1][5])
    assert again.text == first.text
    assert [r.to_dict() for r in again.rounds] == [r.to_dict() for r in first.rounds]
    assert again.stats.forward_passes == first.stats.forward_passes
    assert len(loads) == n_loads                      # the loaded pair was reused, not reloaded


def test_compare_reuses_the_run_and_scores_every_method(studio, qa_run):
    state = qa_run[-1][5]
    outs = drain(studio.compare(state, *inputs(studio, max_new_tokens=3)))
    status, cards, fig, table, summary, md_path, results = outs[-1]
    names = [r["name"] for r in results]
    assert names == ["AdaFuse", f"greedy {A}", f"greedy {B}", "fixed L=1", "fixed L=2", "fixed L=3", "UniTE k=10", "GaC"]
    assert results[0]["text"] == state["text"] and results[0]["seconds"] == pytest.approx(state["stats"]["seconds"], abs=1e-3)
    for r in results:
        assert r["objective"] is not None and math.isfinite(r["objective"]) and r["objective"] > 0
        assert set(r["nll"]) == {A, B}                    # every method scored by both models
        assert r["objective"] == pytest.approx(sum(r["nll"].values()) / 2, abs=1e-5)
        assert set(r["metrics"]) == {"exact match", "token F1"}
    assert set(results[1]["forward_passes"]) == {A} and set(results[3]["forward_passes"]) == {A, B}
    assert list(table["method"]) == names and "exact match" in table.columns
    assert [a.text for a in fig.layout.annotations][-1] == "Metrics vs reference"
    assert "| fixed L=3 |" in summary and open(md_path, encoding="utf-8").read() == summary
    assert "af-best" in cards and status.startswith("**Done.**")
    # AdaFuse's objective here is the one scored from scratch (same value as the run's tokens say)
    fresh = studio.compare(None, *inputs(studio, max_new_tokens=3))
    first = next(fresh)
    assert first[0] == "Running AdaFuse…"
    fresh.close()


def test_stop_ends_the_run_after_its_round_and_renders_it(studio):
    """Stop (issue 16): the session's run ends after the current round with every output, the
    exports included, being the stopped run's; another session's run is untouched."""
    gen = studio.run(*inputs(studio, task="Free chat", max_new_tokens=40), session="s")
    next(gen), next(gen), next(gen)                   # status, rounds 1 and 2
    studio.stop("other")
    assert "Decoding" in next(gen)[0]
    studio.stop("s")
    status, spans, cands, props, hist, state, text, summary, json_path, md_path = drain(gen)[-1]
    trace = Trace.from_dict(state)
    assert status.startswith("**Stopped.**") and "stopped: Stop pressed" in status
    assert trace.stats.stop_reason == "cancelled" and 3 <= len(trace.rounds) < 40
    assert "af-cursor" not in spans and text == trace.text and len(props) == 2 * len(trace.rounds)
    assert json.loads(open(json_path, encoding="utf-8").read()) == json.loads(trace.to_json())
    assert open(md_path, encoding="utf-8").read() == summary and "Singapore" in summary
    assert studio.why_not_compare(state, "s") == "Not compared: the run was stopped."


def test_a_new_run_ends_the_sessions_comparison(studio, qa_run):
    """A Run press (issue 16, item 5): the session's comparison gives up the decode slot after
    its current round; another session is told that its run waits."""
    gen = studio.compare(qa_run[-1][5], *inputs(studio, max_new_tokens=3), session="s")
    assert next(gen)[0].startswith("Running greedy")
    assert studio.announce_run("t", slots=1).startswith("Waiting for another request")
    assert studio.announce_run("s", slots=1) == "Stopping the comparison to start this run…"
    status, cards, fig, table, *rest = drain(gen)[-1]
    assert status.startswith("Comparison cancelled by a new run; 1 of 8 methods measured")
    assert list(table["method"]) == ["AdaFuse"]
    assert studio.why_not_compare(qa_run[-1][5], "s") == "Comparison cancelled by a new run."


def test_the_star_never_goes_to_a_degenerate_output(studio, lms):
    """Issue 16, item 9: the prompt repeated three times has the lowest objective of all (the
    models find it very likely), so the ★ went to it. Flagged degenerate, it gets ⚠ instead."""
    from adafuse.ui.compare import MethodResult, best_index, degenerate
    from adafuse.ui.scoring import OutputScorer
    prompt = studio.fill_task("Free chat")[0]
    texts = {"greedy gemma3-270m": "\n" + "\n".join([prompt] * 3),
             "AdaFuse": " Yes. Singapore is one of the safest cities in the world, even at night.",
             "fixed L=1": " Yes, it is safe, it is safe, it is safe, it is safe, it is safe, it is safe, it is safe."}
    scorer = OutputScorer(lms, prompt, "chat")
    results = [MethodResult(name, text, *scorer.objective(text), 1.0, {A: 1}, flag=degenerate(text, prompt))
               for name, text in texts.items()]
    echo, answer, loop = results
    assert echo.objective < answer.objective           # the real scores: the echo would have won
    assert (echo.flag, answer.flag, loop.flag) == ("repeats the prompt", "", "repeats itself")
    assert best_index(results) == 1
    headers, rows = callbacks.comparison_table(results)
    assert headers[5] == "note" and [r[5] for r in rows] == ["⚠ repeats the prompt", "★ lowest objective",
                                                             "⚠ repeats itself"]
    cards = callbacks.compare_cards_html(results)
    assert '<div class="af-card af-best"><h4>AdaFuse <span class="af-card-note">★ lowest objective</span>' in cards
    assert ('<div class="af-card af-flagged"><h4>greedy gemma3-270m <span class="af-card-note">⚠ repeats the '
            'prompt</span>') in cards and cards.count("★") == 1
    # a plain answer that restates part of the question is not flagged
    assert degenerate(" Singapore is safe for a solo traveller.", prompt) == ""


def test_free_chat_says_which_model_gets_the_raw_prompt(studio, lms):
    """Issue 16, item 9: with the chat format a model without a chat template gets the raw
    prompt (adafuse.state); the status says so, live and at the end."""
    raw = [lm.name for lm in lms if not lm.tokenizer.chat_template]
    assert raw == [B]                                   # Gemma-3-270M base has none; SmolLM2 has one
    outs = drain(studio.run(*inputs(studio, task="Free chat", max_new_tokens=4)))
    note = "gemma3-270m has no chat template: it gets the raw prompt."
    assert outs[-1][0].startswith("**Done.**") and outs[-1][0].endswith(note)
    assert all(note in o[0] for o in outs[1:] if o[0].startswith("Decoding… round"))
    assert callbacks.no_chat_template_note(lms, "raw") == ""


def test_toasts_carry_their_title_in_their_text():
    """Gradio 6's page heads every raised error's toast "Error" whatever its title: the title
    leads the (escaped) text, and is the toast's title for API clients."""
    e = callbacks.toast("the prompt is <empty>", title="Invalid input")
    assert e.title == "Invalid input" and e.message == "Invalid input: the prompt is &lt;empty&gt;"
    assert callbacks.toast("plain").message == "plain"


def test_an_emptied_task_preset_fills_nothing(studio):
    """A what-if re-run from Cases empties the task preset box (app.forget_preset); its change
    event must leave the prompt the re-run filled."""
    assert all(isinstance(v, type(gr.skip())) for v in studio.fill_task(None))
    import app
    filled = app.forget_preset(lambda *a: ("A", "B", "(none)", "prompt", gr.update(selected="studio")))()
    assert filled[-1] is None and filled[:4] == ("A", "B", "(none)", "prompt")


def test_time_limit_stops_decoding_and_says_so(lms, tmp_path):
    st = Studio(store=ModelStore(lambda n, p=None: {lm.name: lm for lm in lms}[n]),
                limits=Limits(time_limit_s=1e-6), export_dir=str(tmp_path))
    out = drain(st.run(*inputs(st, max_new_tokens=3)))[-1]
    assert Trace.from_dict(out[5]).stats.stop_reason == "time_limit"
    assert "time limit" in out[0] and "time limit" in out[1]


def test_model_load_failure_is_clear_and_harmless(studio, monkeypatch):
    """A load that fails is a status and a toast, not an exception (which marks every output
    "Error"); the next request works."""
    monkeypatch.setenv("ADAFUSE_ALLOW_CUSTOM_MODELS", "1")
    with pytest.warns(UserWarning, match="not-a-real-model"):       # gr.Warning outside a Gradio app
        outs = drain(studio.run(*inputs(studio, model_b="nobody-here/not-a-real-model")))
    assert outs[0][0].startswith("Loading ")
    assert outs[-1][0].startswith("**Not run: a model did not load.**") and "not-a-real-model" in outs[-1][0]
    assert outs[-1][5] is None and studio.why_not_compare(None, None) == "Not compared: the run did not start."
    out = drain(studio.run(*inputs(studio, max_new_tokens=3)))[-1]    # the next request works
    assert out[6].strip()


def test_a_model_that_cannot_load_here_keeps_the_loaded_pair(lms, tmp_path):
    """Issue 16, item 7: a preset that cannot load here (Llama: not cached, and offline) is named
    at once, when chosen and when run, in the status and a toast; the run ends there without an
    error, with the loaded pair still loaded (the same objects, nothing reloaded)."""
    loads = []

    def load(name, progress=None):
        loads.append(name)
        return {lm.name: lm for lm in lms}[name]
    store = ModelStore(load, adafuse.unavailable)
    st = Studio(store=store, export_dir=str(tmp_path))
    pair = store.get([A, B])
    llama = "llama-3.1-8b-instruct"
    with pytest.warns(UserWarning, match="preset 'llama-3.1-8b-instruct' is not available"):
        picked = st.model_picked(llama)
    assert picked.startswith("**Not available here.** preset 'llama-3.1-8b-instruct' is not available")
    assert isinstance(st.model_picked(A), type(gr.skip())) and isinstance(st.model_picked("(none)"), type(gr.skip()))
    with pytest.warns(UserWarning, match="meta-llama/Llama-3.1-8B-Instruct"):
        outs = drain(st.run(*inputs(st, model_b=llama), session="s"))
    assert len(outs) == 1                                   # no "Loading…" first: it fails fast
    status, state = outs[0][0], outs[0][5]
    assert status.startswith("**Not run: a model did not load.** preset 'llama-3.1-8b-instruct' is not available")
    assert status.endswith(f"Still loaded: {A}, {B}.") and state is None
    assert st.why_not_compare(state, "s") == "Not compared: the run did not start."
    with pytest.warns(UserWarning):
        compared = drain(st.compare(None, *inputs(st, model_a=llama)))
    assert compared[-1][0].startswith("**Not run: a model did not load.**")
    assert store.loaded == [A, B] and store.get([A, B]) == pair and all(x is y for x, y in zip(store.get([A, B]), pair))
    assert loads == [A, B]                                  # loaded once, before the failed runs


def test_out_of_memory_frees_and_reports(studio, monkeypatch):
    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield
    monkeypatch.setattr(studio.api, "stream", boom)
    with pytest.raises(gr.Error) as e:
        drain(studio.run(*inputs(studio)))
    assert e.value.title == "Out of memory" and "Caches were freed" in e.value.message


def test_model_output_is_escaped_on_the_callback_path(tmp_path):
    evil = ['<script>alert(1)</script>', ' <img src=x onerror=alert(2)>']

    class FakeApi:
        PRESETS = adafuse.PRESETS

        @staticmethod
        def stream(lms, prompt, cfg, max_seconds=None, should_stop=None):
            t = Trace(prompt, "adafuse", [A, B], cfg.to_dict())
            for i, s in enumerate(evil):
                c = Candidate(s, [A], False, 1, {A: 1.0, B: 2.0}, {A: 3, B: 4}, score=1.5)
                t.rounds.append(Round(i, [Proposal(A, [s], [0.5], False, [s]), Proposal(B, [s], [0.5], False, [s])],
                                      [c], 0))
                t.text += s
                t.stats = Stats(0.1, {A: i + 1, B: i + 1}, {A: i + 1, B: i + 1}, "" if i == 0 else "eos")
                yield t

    st = Studio(api=FakeApi, store=ModelStore(lambda n, p=None: object()), export_dir=str(tmp_path))
    outs = drain(st.run(*inputs(st, prompt="<img src=x onerror=alert(3)>")))
    for out in outs:
        for value in out[:2]:
            if isinstance(value, str):
                assert "<script" not in value and "<img" not in value
    assert "&lt;img src=x onerror=alert(2)&gt;" in outs[-1][1]
    cards = callbacks.compare_cards_html([type("R", (), dict(name="<b>x</b>", text=evil[0], objective=1.0, seconds=0.1,
                                                              forward_passes={A: 1}, metrics={}, flag=""))()])
    assert "<script" not in cards and "<b>x" not in cards


def test_store_swaps_only_when_the_selection_changes():
    made = []

    def load(name, progress=None):
        made.append(name)
        return object()
    store = ModelStore(load)
    first = store.get(["a", "b"])
    assert store.get(["a", "b"]) == first and made == ["a", "b"]
    swapped = store.get(["a", "c"])
    assert swapped[0] is first[0] and made == ["a", "b", "c"] and store.loaded == ["a", "c"]
    store.get(["c", "a"])
    assert made == ["a", "b", "c"] and store.loaded == ["c", "a"]


def test_objective_is_each_models_mean_nll_of_the_output(lms):
    from adafuse.ui.scoring import OutputScorer
    prompt, text = "The capital of France is", " Paris, and the capital of Italy is Rome."
    scorer = OutputScorer(lms, prompt)
    objective, per_model = scorer.objective(text)
    for lm in lms:                                   # a direct full forward, independent of the engine
        ctx = lm.tokenizer(prompt).input_ids
        full = lm.tokenizer(prompt + text).input_ids
        k = next(i for i in range(len(full)) if i >= len(ctx) or ctx[i] != full[i])
        with torch.inference_mode():
            logits = lm.model(input_ids=torch.tensor([full])).logits[0].float()
        lp = torch.log_softmax(logits[k - 1:-1], -1).gather(-1, torch.tensor(full[k:])[:, None])
        assert per_model[lm.name] == pytest.approx(float(-lp.mean()), abs=1e-3)
    assert objective == pytest.approx(sum(per_model.values()) / 2)
    assert math.isnan(scorer.objective("")[0])


def test_model_loading_progress_reaches_the_ui(lms, tmp_path):
    by_name = {lm.name: lm for lm in lms}

    def load(name, progress=None):              # what the engine reports while converting
        progress(f"{name}: dequantizing the weights", 0.5)
        return by_name[name]
    seen = []
    st = Studio(store=ModelStore(load), export_dir=str(tmp_path))
    outs = drain(st.run(*inputs(st, max_new_tokens=2), progress=lambda frac, desc=None: seen.append((frac, desc))))
    assert outs[0][0].startswith("Loading smollm2-135m-instruct, gemma3-270m")
    assert (0.0, f"loading {A} (1/2)") in seen and (0.5, f"{B}: dequantizing the weights") in seen
    assert outs[-1][0].startswith("**Done.**")


def test_exports_are_named_by_content_and_old_ones_pruned(tmp_path):
    import os
    st = Studio(api=adafuse, store=ModelStore(lambda n, p=None: object()), export_dir=str(tmp_path))
    a = st._export('{"a": 1}', "json")
    assert st._export('{"a": 1}', "json") == a and a.endswith(".json")
    os.utime(a, (1, 1))                               # an hour-old export
    b = st._export("# summary", "md")
    assert not os.path.exists(a) and os.path.exists(b) and b.endswith(".md")
