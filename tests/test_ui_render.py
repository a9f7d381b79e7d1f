"""Rendering helpers on hand-built traces: spans, escaping, tables, summary, charts; and the
token-level methods' tables on real traces."""
import json

import plotly.graph_objects as go
import pytest

from adafuse.trace import Candidate, Proposal, Round, Stats, Trace
from adafuse import render
from adafuse.ui import charts

A, B = "smollm2-135m-instruct", "gemma3-270m"
XSS = ['<script>alert(1)</script>', '<img src=x onerror="alert(2)">']


def make_trace(spans=(" Singapore", " is generally a", " very safe place"), text=None, evil=False):
    rounds = []
    for i, s in enumerate(spans):
        other = XSS[i % 2] if evil else " other"
        branched = i == 1
        props = [Proposal(A, s.split(" ")[1:] and [" " + w for w in s.split()], [0.9] * len(s.split()), branched,
                          [s, other] if branched else [s]),
                 Proposal(B, [other], [0.4], False, [other])]
        cands = [Candidate(s, [A, B] if i == 0 else [A], False, len(s.split()), {A: 0.5 + i, B: 0.7}, {A: 2, B: 3}),
                 Candidate(other, [B], False, 1, {A: 3.0, B: 2.5}, {A: 1, B: 1})]
        for c in cands:
            c.score = sum(c.nll.values()) / 2
        rounds.append(Round(i, props, cands, 0))
    text = "".join(spans) if text is None else text
    return Trace("Is Singapore safe?" + (XSS[0] if evil else ""), "adafuse", [A, B],
                 {"mode": "adafuse", "tau": 0.7, "max_words": 3, "branches": 1, "max_new_tokens": 32,
                  "prompt_format": "raw", "stop": ["\nQuestion:"]},
                 rounds, text, Stats(1.25, {A: 9, B: 8}, {A: 7, B: 8}, "eos"))


def test_spans_are_bracketed_coloured_and_marked():
    t = make_trace()
    assert t.bracketed() == "[Singapore] [is generally a] [very safe place]"
    out = render.spans_html(t)
    assert out.count("data-round=") == 3
    colors = render.model_colors(t.models)
    assert f"--c:{colors[A]}" in out
    # round 0 was proposed by both models: marked as agreement with both colours
    assert "af-agree" in out and f"{colors[B]}33" in out
    # round 1 branched: exactly one span carries the mark
    assert out.count("af-branched") == 1 and out.count(render.BRANCH_MARK) >= 1
    assert "is generally a" in out and "Round 1" in out
    assert "3 rounds" in out and "end of sequence" in out


def test_model_and_prompt_text_is_escaped_everywhere():
    t = make_trace(spans=[" ok", " <script>alert(1)</script>", ' <img src=x onerror="alert(2)">'], evil=True)
    for html_out in (render.spans_html(t), render.spans_html(t, live=True), render.round_tooltip_html(t.rounds[1], t.models)):
        assert "<script" not in html_out and "<img" not in html_out
        assert "&lt;script&gt;" in html_out or "&lt;img" in html_out
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in render.spans_html(t)
    # a model named with markup is escaped in the legend too
    t.models = [A + "<b>", B]
    assert "<b>" not in render.legend_html(t.models)


def test_stop_string_cut_last_span():
    t = make_trace(text=" Singapore is generally a very")
    assert t.spans()[-1] == " very"
    out = render.spans_html(t)
    assert "very safe place" not in out.split("af-tip")[0]


def test_candidate_and_proposal_tables():
    t = make_trace()
    headers, rows = render.candidate_table(t)
    assert headers[:4] == ["round", "winner", "candidate", "proposed by"]
    assert headers[4:] == ["NLL smollm2-135m-instruct", "NLL gemma3-270m", "fused score", "words"]
    assert len(rows) == 6
    winners = [r for r in rows if r[1] == "✓"]
    assert [w[0] for w in winners] == [1, 2, 3]      # rounds as users count them, from 1
    assert winners[1][2] == " is generally a" and winners[1][3] == "smollm2-135m-instruct"
    assert winners[1][6] == round((1.5 + 0.7) / 2, 4)
    ph, prow = render.proposal_table(t)
    assert ph[1:4] == ["model", "words", "first-token margins"]
    assert len(prow) == 6 and prow[2][4] == "yes" and prow[2][3] == "0.90 0.90 0.90"
    assert render.candidate_table(None)[1] == []


def test_rounds_count_from_one_with_the_right_plural():
    """Issue 16, item 9: the user sees rounds numbered from 1 (the trace's index counts from 0)
    and "1 round", not "1 rounds"."""
    t = make_trace()
    assert render.round_tooltip_html(t.rounds[0], t.models).startswith(
        '<span class="af-tip"><span class="af-tip-title">Round 1</span>')
    assert [row[0] for row in render.proposal_table(t)[1]] == [1, 1, 2, 2, 3, 3]
    assert "<td>3</td><td>✓</td>" in render.candidate_rows_html(t.rounds[2], t.models, with_round=True)
    assert [r.index for r in t.rounds] == [0, 1, 2]                      # the trace keeps its own
    one = make_trace(spans=[" Singapore"])
    assert render.status_line(one).startswith("1 round · ") and "Words per round (1 round," in \
        charts.words_histogram(one).layout.title.text
    assert render.status_line(t).startswith("3 rounds · ")
    assert render.plural(0, "round") == "0 rounds"


def test_the_summary_lists_the_settings_of_its_method():
    """Issue 16, item 9: an AdaFuse summary listed `fixed_words=1`, which only fixed rounds read."""
    t = make_trace()
    t.settings["fixed_words"] = 1
    settings = next(line for line in render.summary_markdown(t).splitlines() if line.startswith("Settings:"))
    assert settings == ("Settings: `mode=adafuse`, `tau=0.7`, `max_words=3`, `branches=1`, `max_new_tokens=32`, "
                        "`prompt_format=raw`")
    t.settings.update(mode="fixed", fixed_words=2)
    assert "`mode=fixed`, `fixed_words=2`, `max_new_tokens=32`" in render.summary_markdown(t)
    t.settings["mode"] = "greedy"
    assert "Settings: `mode=greedy`, `max_new_tokens=32`, `prompt_format=raw`" in render.summary_markdown(t)


def test_empty_and_live_states():
    assert "Run AdaFuse" in render.spans_html(None)
    t = make_trace(spans=[])
    assert "no output yet" in render.spans_html(t, live=True)
    assert "decoding" in render.spans_html(make_trace(), live=True)


def test_summary_markdown_is_shareable():
    class R:  # the shape of compare.MethodResult
        def __init__(self, name, text, objective, seconds, fp, metrics, flag=""):
            self.name, self.text, self.objective, self.seconds = name, text, objective, seconds
            self.forward_passes, self.metrics, self.flag = fp, metrics, flag
    t = make_trace()
    md = render.summary_markdown(t, [R("AdaFuse", t.text, 0.8, 1.2, {A: 9, B: 8}, {"exact match": 1.0}),
                                     R("greedy gemma3-270m", "a | b\nc", 1.1, 0.5, {B: 7}, {"exact match": 0.0},
                                       "repeats itself")],
                                 reference="Singapore", task="qa")
    assert "| greedy gemma3-270m | ⚠ repeats itself: a \\| b ⏎ c |" in md
    assert "[Singapore] [is generally a] [very safe place]" in md
    assert "`tau=0.7`" in md and "| AdaFuse |" in md and "a \\| b ⏎ c" in md
    assert "| 1.00 |" in md and "| 0.00 |" in md
    # the prompt is fenced so markup in it is shown, not interpreted
    md2 = render.summary_markdown(make_trace(evil=True))
    assert "```text\nIs Singapore safe?<script>" in md2


def test_trace_json_round_trip_feeds_rendering():
    t = make_trace()
    back = type(t).from_dict(json.loads(t.to_json()))
    assert render.candidate_table(back) == render.candidate_table(t)


def test_charts():
    t = make_trace()
    h = charts.words_histogram(t)
    assert isinstance(h, go.Figure)
    assert list(h.data[0].x) == [1, 3] and list(h.data[0].y) == [1, 2]

    class R:
        def __init__(self, name, objective, fp, metrics):
            self.name, self.objective, self.seconds, self.forward_passes, self.metrics = name, objective, 1.0, fp, metrics
    res = [R("AdaFuse", 0.9, {A: 10, B: 9}, {"BLEU": 40.0}), R("greedy A", 1.2, {A: 8}, {"BLEU": 20.0})]
    fig = charts.comparison_figure(res, [A, B])
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith("Ensemble objective") and titles[-1] == "Metrics vs reference"
    fp_bars = [d for d in fig.data if d.legendgroup == "fp"]
    assert [list(d.y) for d in fp_bars] == [[10, 8], [9, 0]]
    assert list(fig.data[-1].y) == [40.0, 20.0]      # BLEU already 0-100
    no_ref = charts.comparison_figure([R("AdaFuse", 0.9, {A: 1}, {})], [A, B])
    assert len(no_ref.layout.annotations) == 3


def test_a_candidate_cut_at_a_stop_string_shows_the_cut():
    cut = Candidate(" 21\n", [B], False, 1, {A: 0.47, B: 0.70}, {A: 4, B: 4}, score=0.58,
                    stop="\n", dropped="\nQuestion:")
    assert render.candidate_label(cut) == " 21\\n ⏹ cut: \\nQuestion:"
    assert render.candidate_label(Candidate(" 18", [A])) == " 18"
    t = make_trace()
    t.rounds[0].candidates.append(cut)
    rows = render.candidate_table(t)[1]
    assert rows[len(t.rounds[0].candidates) - 1][2] == " 21\\n ⏹ cut: \\nQuestion:"
    assert "⏹ cut: \\nQuestion:" in render.candidate_rows_html(t.rounds[0], t.models)
    again = Trace.from_dict(json.loads(t.to_json())).rounds[0].candidates[-1]
    assert (again.stop, again.dropped) == ("\n", "\nQuestion:")


@pytest.mark.parametrize("mode", ["unite", "gac"])
def test_token_level_steps_show_as_probabilities(lms, mode):
    """UniTE's and GaC's numbers are -log p of tokens (adafuse/unite.py, gac.py): the candidate
    table and the spans view show them as probabilities, the mean over models deciding."""
    import adafuse
    from adafuse import DecodeConfig, render
    trace = adafuse.generate(lms, "Question: who wrote Hamlet?\nAnswer:", DecodeConfig(mode=mode, max_new_tokens=3))
    headers, rows = render.candidate_table(trace)
    names = [render.short_name(m) for m in trace.models]
    assert headers[4:] == [f"p {n}" for n in names] + ["mean p", "words"]
    for row in rows:
        p_a, p_b, mean = row[4:7]
        assert 0 <= p_a <= 1 and 0 <= p_b <= 1 and mean == pytest.approx((p_a + p_b) / 2, abs=2e-4)
    winners = [row for row in rows if row[1] == "✓"]
    assert len(winners) == len(trace.rounds)
    assert all(w[6] == max(r[6] for r in rows if r[0] == w[0]) for w in winners)   # the most likely token
    assert "mean p" in render.spans_html(trace)
