"""Bad input gets a clear error; stops, formats, trace export and model loading behave."""
import dataclasses
import json
import time

import pytest

import adafuse
from adafuse import DecodeConfig, InputError, ModelLoadError
from adafuse.cli import main as cli_main


@pytest.mark.parametrize("kwargs, message", [
    (dict(tau=-0.1), "tau"),
    (dict(tau=float("nan")), "tau"),
    (dict(max_words=0), "max_words"),
    (dict(max_words=10_000), "max_words"),
    (dict(branches=0), "branches"),
    (dict(branches=99), "branches"),
    (dict(fixed_words=0), "fixed_words"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=-5), "max_new_tokens"),
    (dict(max_words=2.5), "integer"),
    (dict(mode="beam"), "mode"),
    (dict(prompt_format="xml"), "prompt format"),
    (dict(stop=("",)), "stop"),
    (dict(execution=adafuse.Execution(fast="yes")), "fast must be one of auto, on, off"),
    (dict(execution=adafuse.Execution(parallel=1)), "parallel must be one of"),
    (dict(execution=adafuse.Execution(cuda_graphs="off")), "cuda_graphs must be True or False"),
    (dict(execution={"fast": "off"}), "execution must be an Execution"),
])
def test_bad_settings_are_named(smol, kwargs, message):
    with pytest.raises(InputError, match=message):
        adafuse.generate([smol], "Hello", DecodeConfig(**kwargs))


def test_user_facing_tau_range():
    with pytest.raises(InputError, match=r"tau must be in \[0, 1\]"):
        DecodeConfig(tau=1.2).check_tau_range()
    assert DecodeConfig(tau=1.0).check_tau_range().tau == 1.0


def test_bad_prompts(lms, smol):
    for prompt in ["", "   \n", None]:
        with pytest.raises(InputError, match="prompt is empty"):
            adafuse.generate(lms, prompt, DecodeConfig())
    short = dataclasses.replace(smol, context_length=8)
    with pytest.raises(InputError, match="context window is 8 tokens"):
        adafuse.generate([short], "a prompt that is clearly longer than eight tokens in any tokenizer",
                         DecodeConfig())
    with pytest.raises(InputError, match="greedy mode decodes with one model"):
        adafuse.generate(lms, "Hello", DecodeConfig(mode="greedy"))


def test_unknown_models_fail_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="known presets|not a preset") as e:
        adafuse.load_model("no-such-model")
    assert "smollm2-135m-instruct" in str(e.value)
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache") as e:
        adafuse.load_model("someorg/not-a-cached-model")
    assert "someorg/not-a-cached-model" in str(e.value)
    assert time.monotonic() - start < 30  # fails at once instead of hanging on the network
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="could not load model"):
        adafuse.load_model(str(broken))


def test_stop_string_cuts_the_output(smol):
    prompt = "Question: what is the capital of France?\nAnswer: Paris\n\nQuestion: what is 2 + 2?\nAnswer:"
    free = adafuse.generate([smol], prompt, DecodeConfig(max_new_tokens=40))
    assert "\n" in free.text.strip()  # the model goes on past the answer's line
    cut = adafuse.generate([smol], prompt, DecodeConfig(max_new_tokens=40, stop=("\n",)))
    assert cut.stats.stop_reason == "stop_string"
    assert cut.text == free.text[:free.text.index("\n")] and cut.text.strip()
    assert "".join(cut.spans()) == cut.text


def test_chat_format_ends_at_eos(lms, smol):
    trace = adafuse.generate([smol], "Reply with one word: what colour is the sky?",
                             DecodeConfig(prompt_format="chat", max_new_tokens=48))
    assert trace.stats.stop_reason == "eos"
    assert trace.rounds[-1].winner.eos
    assert "<|im_end|>" not in trace.text and trace.text.strip()
    # Gemma-3-270M (base) has no chat template: it reads the plain prompt, and the trace says so
    pair = adafuse.generate(lms, "Name a colour.", DecodeConfig(prompt_format="chat", max_new_tokens=8))
    assert pair.settings["prompt_format_used"] == {"smollm2-135m-instruct": "chat", "gemma3-270m": "raw"}


def test_max_new_tokens_bounds_every_model(lms):
    trace = adafuse.generate(lms, "Once upon a time", DecodeConfig(max_new_tokens=10))
    assert trace.stats.stop_reason == "max_new_tokens"
    assert max(trace.stats.new_tokens.values()) >= 10
    # the proposer's span never passes its budget, so the first model to reach it stops exactly there
    assert 10 in trace.stats.new_tokens.values()


def test_trace_json_has_the_schema_and_round_trips(lms):
    trace = adafuse.generate(lms, "The sky is", DecodeConfig(max_new_tokens=8, branches=2))
    d = json.loads(trace.to_json())
    assert {"text", "mode", "models", "settings", "rounds", "stats"} <= set(d)
    assert {"tau", "max_words", "branches", "fixed_words", "max_new_tokens", "prompt_format", "stop"} <= set(
        d["settings"])
    r = d["rounds"][0]
    assert {"index", "chosen", "chosen_index", "proposals", "candidates"} <= set(r)
    assert {"model", "words", "margins", "branched"} <= set(r["proposals"][0])
    assert {"text", "proposers", "nll", "score"} <= set(r["candidates"][0])
    assert set(r["candidates"][0]["nll"]) == set(d["models"])
    assert {"seconds", "forward_passes", "new_tokens", "stop_reason"} <= set(d["stats"])
    assert d["text"] == "".join(x["chosen"] for x in d["rounds"])
    again = adafuse.Trace.from_dict(d)
    assert again.to_dict() == d
    assert trace.bracketed() == " ".join(f"[{x['chosen'].strip()}]" for x in d["rounds"] if x["chosen"].strip())


def test_forward_passes_are_counted(lms):
    trace = adafuse.generate(lms, "The capital of Italy is", DecodeConfig(max_new_tokens=12))
    for name in trace.models:
        fp = trace.stats.forward_passes[name]
        # one prefill, then at most one forward per own token plus one scoring forward per round
        assert 1 + trace.stats.new_tokens[name] // 2 <= fp <= 1 + trace.stats.new_tokens[name] + 2 * len(trace.rounds)


def test_cli_generate_json_and_errors(capsys):
    code = cli_main(["generate", "--prompt", "The capital of France is", "--max-new-tokens", "6", "--json",
                     "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    d = json.loads(out)
    assert d["models"] == list(adafuse.DEFAULT_PAIR) and d["text"]
    for argv, message in [(["--tau", "1.5"], "tau must be in [0, 1]"), (["--max-words", "0"], "max_words"),
                          (["--mode", "greedy"], "greedy mode decodes with one model"),
                          (["--max-new-tokens", "0"], "max_new_tokens")]:
        code = cli_main(["generate", "--prompt", "Hi"] + argv)
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err
    assert cli_main(["generate", "--prompt", "  "]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert cli_main(["generate", "--prompt", "Hi", "--models", "nope"]) == 2
    assert "not a preset" in capsys.readouterr().err


def test_cli_execution_flags_reach_the_decode_and_keep_its_text(lms, monkeypatch, capsys):
    """--fast-path on --parallel on: the fast path's eager form and a thread per model, on CPU; the
    same text as the defaults (which keep both off on CPU)."""
    import adafuse.decode
    import adafuse.models
    monkeypatch.setattr(adafuse.models, "load_models", lambda names, **kw: lms)
    seen = []
    real = adafuse.decode.generate
    monkeypatch.setattr(adafuse.decode, "generate", lambda lms_, prompt, cfg: seen.append(cfg) or real(lms_, prompt, cfg))
    texts = []
    for flags in ([], ["--fast-path", "on", "--parallel", "on"]):
        assert cli_main(["generate", "--prompt", "The capital of France is", "--max-new-tokens", "8", "--json"]
                        + flags) == 0
        texts.append(json.loads(capsys.readouterr().out)["text"])
    assert [c.execution for c in seen] == [adafuse.Execution(), adafuse.Execution(fast="on", parallel="on")]
    assert texts[0] == texts[1] and texts[0]
    with pytest.raises(SystemExit) as exit_:   # argparse refuses it, naming the choices
        cli_main(["generate", "--prompt", "Hi", "--parallel", "always"])
    assert exit_.value.code == 2 and "invalid choice: 'always'" in capsys.readouterr().err


def test_cli_bracketed_output(capsys):
    assert cli_main(["generate", "--prompt", "Question: who wrote Hamlet?\nAnswer:", "--max-new-tokens", "8",
                     "--stop", "\\nQuestion:", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[") and out[0].endswith("]")
    assert any("forward passes" in line for line in out)


def test_cli_stop_escapes_keep_other_text():
    from adafuse.config import unescape_stop
    assert unescape_stop("\\nFrage:") == "\nFrage:"
    assert unescape_stop("Übersetzung:\\t") == "Übersetzung:\t"
    assert unescape_stop("plain") == "plain"
