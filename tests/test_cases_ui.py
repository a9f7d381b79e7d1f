"""The Cases view's callbacks on the real pair: it opens on the gallery, lists and filters a run
the harness made, shows a selected item with the live viewer's own renderers, and its what-if
re-run goes through the Studio: with the item's settings it reproduces the eval's output."""
import json
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from cases_run import ADAFUSE, records  # noqa: E402

import adafuse  # noqa: E402
from adafuse.cases import Query, load_trace, open_cases, select  # noqa: E402
from adafuse.trace import Trace  # noqa: E402
from adafuse.ui import cases as ui  # noqa: E402
from adafuse import render  # noqa: E402
from adafuse.ui.callbacks import Limits, Studio  # noqa: E402
from adafuse.ui.model_store import ModelStore  # noqa: E402
from adafuse.ui.paths import hide_paths  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def studio(lms, tmp_path_factory):
    by_name = {lm.name: lm for lm in lms}
    return Studio(store=ModelStore(lambda name, progress=None: by_name[name]),
                  limits=Limits(max_new_tokens=64, time_limit_s=900),
                  export_dir=str(tmp_path_factory.mktemp("exports")))


def select_row(row_value):
    return gr.SelectData(None, {"index": [0, 2], "value": "", "row_value": row_value})


def test_the_view_opens_on_the_gallery():
    run = ui.gallery()
    out = ui.opened(run)
    assert out[0] is run and len(run.cases) >= 6 and "gallery" in out[1]
    assert out[2]["choices"] == [ui.ALL_TASKS] + run.tasks and out[3]["value"] == run.default_focus()
    count, table, number = out[8:11]
    n = len(run.cases)
    assert count.startswith(f"{n} of {n} items match") and number == 1
    frame = table["value"]
    assert list(frame.columns) == ["#", "item", "question", "reference", "adafuse", "greedy:smollm2-135m-instruct",
                                   "greedy:gemma3-270m", "rounds", "branched", "margin"]
    assert list(frame["item"]) == [c.name for c in run.cases][:ui.PAGE_SIZE]
    assert len(table["column_widths"]) == len(frame.columns)
    assert out[11] is None and "Select an item" in out[12]                      # nothing selected yet


def test_filters_sort_and_pages(run_dir):
    run = open_cases([run_dir])
    count, table, number = ui.list_view(run, ["disagree"], ui.ALL_TASKS, "", "margin", ADAFUSE, False, 1)
    want = select(run, Query(outcomes=("disagree",), sort="margin"))
    assert list(table["value"]["item"]) == [c.name for c, _ in want]
    assert count.startswith(f"{len(want)} of 3 items match · filters: disagree")
    _, table, number = ui.list_view(run, [], "custom", "timbuktu", "order", ADAFUSE, True, 5, step=1)
    assert list(table["value"]["item"]) == ["custom:2"] and number == 1                  # clamped to the last page
    assert len(table["value"].columns) == 10                   # every method: here the same three


def test_a_selected_item_is_drawn_like_a_live_run(run_dir):
    run = open_cases([run_dir])
    _, table, _ = ui.list_view(run, [], ui.ALL_TASKS, "", "order", ADAFUSE, False, 1)
    row = table["value"].iloc[1].tolist()
    index, head, spans, cands, props, tau, m, b = ui.on_select(run, ADAFUSE, select_row(row))
    rec = records(run_dir, ADAFUSE)[1]
    trace = Trace.from_dict(rec["trace"])
    assert index == 1 and "Timbuktu" in head and "inspected" in head and "reference" in head
    assert spans == render.spans_html(trace)                                # the live viewer's renderer
    headers, rows = render.candidate_table(trace)
    assert list(cands.columns) == headers and cands.where(pd.notna(cands), None).values.tolist() == rows
    assert props.values.tolist() == render.proposal_table(trace)[1]
    assert (tau, m, b) == (0.7, 3, 1)
    for r in records(run_dir, "greedy_gemma3-270m")[1:2]:                  # the single models beside it
        assert render.esc(r["prediction"].strip()) in head
    assert ui.show_case(run, ADAFUSE, None)[1] == ui.empty_detail()[1]


def test_what_if_reruns_live_in_the_studio(run_dir, studio):
    run = open_cases([run_dir])
    rec = records(run_dir, ADAFUSE)[1]
    filled = ui.rerun_inputs(run, 1, ADAFUSE, 0.7, 3, 1, adafuse.PRESETS, 64, False)
    inputs, tabs = filled[:-1], filled[-1]
    assert tabs["selected"] == "studio"
    assert inputs[3] == rec["trace"]["prompt"] and inputs[8] == "\\n" and inputs[10:] == ("qa", "Mali")
    final = list(studio.run(*inputs))[-1]
    again = Trace.from_dict(final[5])
    assert again.text == rec["prediction"]                   # same settings: the eval's output, live
    assert again.to_dict()["rounds"] == Trace.from_dict(rec["trace"]).to_dict()["rounds"]
    what_if = Trace.from_dict(list(studio.run(*ui.rerun_inputs(run, 1, ADAFUSE, 0.3, 1, 2, adafuse.PRESETS, 64,
                                                               False)[:-1]))[-1][5])
    assert (what_if.settings["tau"], what_if.settings["max_words"], what_if.settings["branches"]) == (0.3, 1, 2)
    assert all(len(p.words) <= 1 and len(p.spans) <= 2 for r in what_if.rounds for p in r.proposals)


def test_folders_open_only_under_the_runs_root(run_dir, monkeypatch):
    monkeypatch.setenv("ADAFUSE_RUNS_ROOT", str(run_dir.parent))
    assert len(ui.open_folder("out").cases) == 3
    assert len(ui.open_folder(f"{run_dir}/custom/{ADAFUSE}.jsonl, out").cases) == 3
    with pytest.raises(gr.Error, match="is outside"):
        ui.on_open_folder("/etc")
    with pytest.raises(gr.Error, match="is outside"):
        ui.on_open_folder("../..")
    with pytest.raises(gr.Error, match="type the --out folder"):
        ui.on_open_folder("  ")
    monkeypatch.delenv("ADAFUSE_RUNS_ROOT")
    with pytest.raises(gr.Error, match="off here; upload"):
        ui.on_open_folder("out")


def test_opening_folders_is_off_unless_the_operator_sets_a_root(run_dir, monkeypatch):
    """Issue 16, item 11: by default any visitor could probe which files exist under the working
    directory through the folder box."""
    monkeypatch.delenv("ADAFUSE_RUNS_ROOT", raising=False)
    for probe in ("out", str(run_dir), "/etc/passwd", "."):
        with pytest.raises(gr.Error) as e:
            ui.on_open_folder(probe)
        assert e.value.message.startswith("opening folders on the server is off here")


def test_messages_show_no_server_path(run_dir, monkeypatch):
    """Issue 16, item 11: error messages printed absolute paths; they read relative to the runs root."""
    root = run_dir.parent
    monkeypatch.setenv("ADAFUSE_RUNS_ROOT", str(root))
    (root / "empty").mkdir(exist_ok=True)
    for typed, message in [("nope", "nope: no such file or folder"),
                           ("empty", "empty holds no evaluation results"),
                           (f"{root}/nope", "nope: no such file or folder"),
                           ("/etc", "/etc is outside the folder this app may open runs from")]:
        with pytest.raises(gr.Error) as e:
            ui.on_open_folder(typed)
        assert e.value.message.startswith(message), e.value.message
        assert str(root) not in e.value.message and str(ROOT) not in e.value.message
    opened = ui.on_open_folder(str(run_dir))                  # typed absolute, shown relative
    assert opened[0].name == run_dir.name and str(root) not in opened[1]


def test_an_upload_reads_by_its_file_name(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))       # where Gradio keeps uploads
    assert hide_paths(f"cannot read {tmp_path}/0a1b2c/run.jsonl: denied") == "cannot read run.jsonl: denied"


def test_uploads_and_bad_uploads(run_dir, tmp_path):
    files = [str(p) for p in sorted((run_dir / "custom").glob("*.jsonl"))]
    out = ui.on_upload(files)
    assert len(out[0].cases) == 3 and len(out[0].methods) == 3 and "upload:" in out[1]
    bad = tmp_path / "notes.txt"
    bad.write_text("just some words\n")
    with pytest.raises(gr.Error, match="notes.txt is neither JSON nor JSONL"):
        ui.on_upload([str(bad)])
    with pytest.raises(gr.Error, match="no file uploaded"):
        ui.on_upload([])


def test_rerun_refuses_models_the_app_does_not_offer(run_dir, tmp_path):
    d = records(run_dir, ADAFUSE)[0]["trace"]
    d["models"] = ["someorg/other-7b", "gemma3-270m"]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(d))
    run = open_cases([path])
    with pytest.raises(gr.Error, match="someorg/other-7b, which this app does not offer"):
        ui.rerun_inputs(run, 0, None, 0.7, 3, 1, adafuse.PRESETS, 64, False)
    with pytest.raises(gr.Error, match="select an item first"):
        ui.rerun_inputs(run, None, None, 0.7, 3, 1, adafuse.PRESETS, 64, False)
    assert load_trace(run.cases[0], run.default_focus()).models == d["models"]
