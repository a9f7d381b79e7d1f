"""GaC (adafuse/gac.py), token-level averaging over the union of the models' whole vocabularies, on
the real pair: the single-model invariants, the union's classes, and every score a trace reports
recomputed from the models' own distributions."""
import math

import adafuse
from adafuse import DecodeConfig
from adafuse.gac import union_of
from adafuse.state import start

PROMPT = "Question: who wrote Hamlet?\nAnswer:"


def test_one_model_and_two_copies_give_its_greedy_text(lms):
    for lm in lms:
        greedy = adafuse.generate([lm], PROMPT, DecodeConfig(mode="greedy", max_new_tokens=12))
        for models in ([lm], [lm, lm]):
            trace = adafuse.generate(models, PROMPT, DecodeConfig(mode="gac", max_new_tokens=12))
            assert trace.text == greedy.text and trace.mode == "gac"


def test_the_union_keys_tokens_by_text(lms):
    """A word both vocabularies hold (" the": "Ġthe" in SmolLM2's, "▁the" in Gemma's) is one class;
    control tokens and EOS are no text class; EOS is class 0 in both."""
    union = union_of([lm.vocab for lm in lms])
    assert union.classes[0] == ("", True)
    classes = {c: i for i, c in enumerate(union.classes)}
    the = classes[(" the", False)]
    for k, lm in enumerate(lms):
        mine = union.token_ids[k][union.class_of[k] == the].tolist()
        assert mine and all(lm.vocab.texts[i] == " the" for i in mine)
        eos = union.token_ids[k][union.class_of[k] == 0].tolist()
        assert sorted(eos) == sorted(lm.vocab.eos_ids)
        control = [i for i in range(lm.vocab.n_tokens) if not lm.vocab.proposable[i]]
        assert not set(control) & set(union.token_ids[k].tolist())
    assert len(union.classes) < sum(lm.vocab.n_tokens for lm in lms)   # shared texts counted once


def test_every_score_of_a_step_is_the_class_probability_averaged_over_models(lms):
    trace = adafuse.generate(lms, PROMPT, DecodeConfig(mode="gac", max_new_tokens=6, stop=("\n",)))
    assert trace.text.strip() and "\n" not in trace.text
    first = trace.rounds[0]
    assert first.chosen_index == 0 and first.candidates[0].score == min(c.score for c in first.candidates)
    states = [start(lm, name, PROMPT, "raw") for lm, name in zip(lms, trace.models)]
    best = {}
    for s in states:   # each model's probability of each text: its most likely token with that text
        probs = s.lm.vocab.for_choosing(s.next_logprobs).exp().tolist()
        own = best[s.name] = {}
        for i, text in enumerate(s.lm.vocab.texts):
            if probs[i] > 0 and text and "\ufffd" not in text and not s.lm.vocab.is_eos[i]:
                own[(text, False)] = max(own.get((text, False), 0.0), probs[i])
        own[("", True)] = max(probs[i] for i in s.lm.vocab.eos_ids)
    for c in first.candidates:
        key = (c.text, c.eos)
        ps = [best[s.name].get(key, 0.0) for s in states]
        for s, p in zip(states, ps):
            assert math.isclose(c.nll[s.name], -math.log(p), abs_tol=1e-4) if p > 0 else c.nll[s.name] == math.inf
        assert math.isclose(c.score, -math.log(sum(ps) / len(ps)), abs_tol=1e-4)
    # the winner is the most likely text of all, not only of the candidates shown
    top = max(set(best[states[0].name]) | set(best[states[1].name]),
              key=lambda key: sum(best[s.name].get(key, 0.0) for s in states))
    assert (first.candidates[0].text, first.candidates[0].eos) == top


def test_the_harness_and_the_cli_name_the_method(capsys):
    import json

    import pytest
    from adafuse.cli import main as cli_main
    from adafuse.eval.runner import parse_methods
    (m,) = parse_methods(["gac"], ["a", "b"])
    assert (m.mode, m.slug, m.label) == ("gac", "gac", "gac")
    with pytest.raises(adafuse.InputError, match="gac needs at least two models"):
        parse_methods(["gac"], ["a"])
    assert cli_main(["generate", "--prompt", PROMPT, "--models", "smollm2-135m-instruct,gemma3-270m", "--mode", "gac",
                     "--max-new-tokens", "4", "--json", "--device", "cpu"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "gac" and d["text"] and all(len(r["candidates"]) == 10 for r in d["rounds"])
