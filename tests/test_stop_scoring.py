"""Stop-aware candidates (issue 15, items 1 and 3): no candidate is scored on text after the first
stop string it reaches, and a stop string ends an output only once the output holds text."""
import json
from pathlib import Path

import pytest

import adafuse
from adafuse import DecodeConfig
from adafuse.stops import StopCut, find_stop, first_stop
from test_engine_invariants import full_forward_nll

GALLERY = Path(__file__).resolve().parents[1] / "assets" / "gallery"
# FLORES-200 dev, deu_Latn, sentence 4 (CC BY-SA 4.0), in the ../shared/bench De-En prompt's format
FLORES_4 = ("Translate the following German sentences into English.\n\nPlease translate **only** the content of "
            "each sentence without adding any explanations, annotations, or comments. \nYour translation should "
            "be faithful to the original meaning and written in natural, fluent English.\n\n\nNow, translate the "
            "following sentences:\n\nGerman: Am Montag gab Sara Danius, Ständige Sekretärin des "
            "Literaturnobelpreiskomitees der Schwedischen Akademie in einer Radiosendung auf Sveriges Radio in "
            "Schweden bekannt, dass das Komitee seine Bemühungen eingestellt habe, Bob Dylan über seine Ehrung "
            "mit dem Literaturnobelpreis für Literator zu informieren, nachdem es nicht gelungen war, ihn "
            "persönlich zu erreichen.\nEnglish:")


def gallery_record(task: str, line: int) -> dict:
    with open(GALLERY / task / "adafuse_tau0.7_M3_B1.jsonl", encoding="utf-8") as f:
        return next(rec for rec in map(json.loads, f) if rec["line"] == line)


def assert_scored_from_scratch(lms, prompt, cand):
    for lm in lms:
        context = lm.tokenizer(prompt).input_ids[:cand.context_len[lm.name]]
        assert cand.nll[lm.name] == pytest.approx(full_forward_nll(lm, context, cand.token_ids[lm.name]), abs=1e-3)


def test_find_stop_cuts_at_the_first_stop_string_once_the_output_holds_text():
    assert find_stop("", " 21\n\nQuestion:", ("\n",)) == StopCut("\n", " 21", " 21\n", "\nQuestion:")
    # a match may begin in the committed text's tail
    assert find_stop(" Paris\n", "\nQuestion:", ("\n\n",)) == StopCut("\n\n", "", "\n", "Question:")
    # the earliest match; at one position the shortest stop string
    assert find_stop("", " a\n\nb", ("\n\n", "\n")).stop == "\n"
    assert find_stop("", " a\nb\n\n", ("\n\n", "\n")) == StopCut("\n", " a", " a\n", "b\n\n")
    # an output of whitespace only is not ended: the answer may start on the next line
    assert find_stop("", "\n\nIn", ("\n",)) is None
    assert find_stop("\n", " The dog.\nGerman", ("\n",)) == StopCut("\n", " The dog.", " The dog.\n", "German")
    assert first_stop("  \n\nx\n", ("\n",)) == (5, "\n") and first_stop("\n\n", ("\n",)) is None
    assert find_stop("", "no stop here", ("\n",)) is None and find_stop("", "a\nb", ()) is None


def test_a_span_crossing_the_stop_does_not_win_by_its_template_tokens(lms):
    """Gallery case nq:51: Gemma's " 21\\n\\nQuestion:" beat SmolLM2's " 18" (the right answer) by
    0.054 on the low NLL of the template after the stop string. Cut at the stop it is " 21\\n", and
    " 18" wins."""
    rec = gallery_record("nq", 51)
    assert rec["trace"]["rounds"][0]["chosen"] == " 21\n\nQuestion:"    # the round loop before the fix
    prompt = rec["trace"]["prompt"]
    trace = adafuse.generate(lms, prompt, DecodeConfig(max_new_tokens=32, stop=("\n",)))
    first = trace.rounds[0]
    (cut,) = [c for c in first.candidates if c.stop]
    assert (cut.text, cut.eos, cut.stop, cut.dropped, cut.proposers) == (" 21\n", False, "\n", "\nQuestion:",
                                                                        ["gemma3-270m"])
    for lm in lms:       # every model, its proposer too, scored the cut text and nothing after it
        scored = lm.tokenizer.decode(cut.token_ids[lm.name])
        assert scored.endswith("21\n") and "Question" not in scored
    assert_scored_from_scratch(lms, prompt, cut)
    assert first.chosen == " 18" and cut.score > first.winner.score
    assert trace.text == " 18" and trace.stats.stop_reason == "stop_string"


def test_the_eos_end_marker_scores_the_text_before_the_stop_and_each_models_eos(lms):
    prompt = gallery_record("nq", 51)["trace"]["prompt"]
    trace = adafuse.generate(lms, prompt, DecodeConfig(max_new_tokens=32, stop=("\n",), end_marker="eos"))
    assert trace.settings["end_marker"] == "eos"
    (cut,) = [c for c in trace.rounds[0].candidates if c.stop]
    assert (cut.text, cut.eos, cut.dropped) == (" 21", True, "\nQuestion:")
    assert all(cut.token_ids[lm.name][-1] == lm.eos_id for lm in lms)
    assert_scored_from_scratch(lms, prompt, cut)
    # Neither model expects its EOS where the few-shot template goes on, so ending costs 3.6-9.7
    # nats and the answer runs on (docs/ENGINE.md, "Stop strings": why "stop" is the default).
    last = trace.rounds[-1].winner
    assert last.eos and last.stop == "\n" and last.text == "" and last.output == "\n"
    assert trace.text == " 18 years old in the usa" and trace.stats.stop_reason == "stop_string"


def test_a_newline_before_any_text_does_not_end_the_output(lms, smol):
    """FLORES De-En item 4 came back empty from the pair: SmolLM2's first proposal is a line break
    (its answer would start on the next line), it won round 0 against Gemma's " On", and the stop
    string "\\n" ended the output before it held text. Now that line break ends nothing. What
    remains is the method's behaviour, shown here and in docs/RESULTS.md: SmolLM2 then continues the
    template ("\\nGerman:"), alone and in the pair, where it beats Gemma's "On" by fused score."""
    cfg = DecodeConfig(max_new_tokens=24, stop=("\n",))
    alone = adafuse.generate([smol], FLORES_4, cfg)
    pair = adafuse.generate(lms, FLORES_4, cfg)
    first, second = pair.rounds[:2]
    assert [c.text for c in first.candidates] == ["\n", " On"] and first.chosen == "\n"
    assert not first.winner.stop                     # a line break before any text ends nothing
    assert [c.text for c in second.candidates] == ["\nGerman:", "On"] and second.chosen == "\nGerman:"
    assert pair.text == alone.text == "\n\nGerman:" and pair.stats.stop_reason == "stop_string"
