"""UniTE (adafuse/unite.py), a baseline of the AdaFuse paper's Table 1, on the real pair: the
single-model invariants, and every score a trace reports recomputed from the models' distributions."""
import math

import adafuse
from adafuse import DecodeConfig
from adafuse.state import start
from adafuse.unite import stands_on, top_k

PROMPT = "Question: who wrote Hamlet?\nAnswer:"


def test_one_model_and_k1_with_two_copies_give_its_greedy_text(lms):
    for lm in lms:
        greedy = adafuse.generate([lm], PROMPT, DecodeConfig(mode="greedy", max_new_tokens=12)).text
        assert adafuse.generate([lm], PROMPT, DecodeConfig(mode="unite", max_new_tokens=12)).text == greedy
        assert adafuse.generate([lm, lm], PROMPT, DecodeConfig(mode="unite", top_k=1, max_new_tokens=12)).text == greedy


def test_every_score_of_a_step_is_the_union_probability_averaged_over_models(lms):
    trace = adafuse.generate(lms, PROMPT, DecodeConfig(mode="unite", max_new_tokens=6, stop=("\n",)))
    assert trace.text.strip() and "\n" not in trace.text and trace.mode == "unite"
    first = trace.rounds[0]
    states = [start(lm, name, PROMPT, "raw") for lm, name in zip(lms, trace.models)]
    union = [(c.text, c.eos) for c in first.candidates]
    # the union holds each model's top-k tokens by text, every one of them, proposer recorded
    for s in states:
        for text, eos, _, _ in top_k(s, 10):
            assert (text, eos) in union and s.name in first.candidates[union.index((text, eos))].proposers
    # each model's probability of each union token, normalised over the union; the mean decides
    avg = [0.0] * len(union)
    for s in states:
        own = {(t, e): p for t, e, _, p in top_k(s, 10)}
        probs = []
        for key in union:   # each unranked token read alone, not in probabilities()' one copy
            i = None if key in own else stands_on(s, "", *key)
            probs.append(own[key] if key in own else 0.0 if i is None else float(s.next_logprobs[i].exp()))
        for j, c in enumerate(first.candidates):
            q = probs[j] / sum(probs)
            assert math.isclose(c.nll[s.name], -math.log(q), abs_tol=1e-4)
            avg[j] += q / len(states)
    for c, a in zip(first.candidates, avg):
        assert math.isclose(c.score, -math.log(a), abs_tol=1e-4)
    assert first.chosen_index == min(range(len(union)), key=lambda j: first.candidates[j].score)


def test_the_harness_and_the_cli_name_the_method():
    from adafuse.eval.runner import parse_methods
    m = parse_methods(["unite", "unite:5"], ["a", "b"])
    assert [(x.label, x.slug, x.top_k) for x in m] == [("unite", "unite_k10", 10), ("unite:5", "unite_k5", 5)]
    assert m[0].params()["top_k"] == 10


def test_cli_generate_mode_unite(capsys):
    import json
    from adafuse.cli import main as cli_main
    pair = "smollm2-135m-instruct,gemma3-270m"
    assert cli_main(["generate", "--prompt", PROMPT, "--models", pair, "--mode", "unite", "--top-k", "5",
                     "--max-new-tokens", "4", "--json", "--device", "cpu"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "unite" and d["settings"]["top_k"] == 5 and d["text"]
    assert all(len(r["proposals"][0]["spans"]) <= 5 for r in d["rounds"])
    assert cli_main(["generate", "--prompt", PROMPT, "--models", pair, "--mode", "unite", "--top-k", "0"]) == 2
    err = capsys.readouterr().err
    assert "top_k" in err and "Traceback" not in err
