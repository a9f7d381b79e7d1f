"""No proposal, greedy word or branch holds a special or control token other than the model's end of
text (issue 15, item 2): they are text to no other model, which then scores their literal spelling
as ordinary tokens."""
import pytest
from transformers import AutoTokenizer

import adafuse
from adafuse import DecodeConfig
from adafuse.models import ensure_converted
from adafuse.vocab import control_ids


def test_the_control_tokens_of_the_lineup(smol, gemma):
    qwen = AutoTokenizer.from_pretrained(str(ensure_converted("qwen2.5-coder-0.5b-instruct")))
    cases = [(gemma.tokenizer, ["<start_of_image>", "<end_of_image>", "[multimodal]", "<start_of_turn>",
                                "<end_of_turn>", "<pad>", "<bos>", "<unused0>"], ["<table>", "</h1>", "\n\n", "<eos>"]),
             (smol.tokenizer, ["<|im_start|>", "<|endoftext|>", "<jupyter_output>"], ["<|im_end|>"]),
             (qwen, ["<|im_start|>", "<|endoftext|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>"], [])]
    for tok, control, text in cases:
        banned = control_ids(tok)
        assert all(tok.convert_tokens_to_ids(t) in banned for t in control), [t for t in control
                                                                               if tok.convert_tokens_to_ids(t) not in banned]
        assert not [t for t in text if t not in ("<eos>", "<|im_end|>") and tok.convert_tokens_to_ids(t) in banned]
    for lm in (smol, gemma):                 # the end of text is a control token that may be proposed
        assert lm.eos_id in control_ids(lm.tokenizer) and lm.vocab.proposable[lm.eos_id]
        assert not lm.vocab.proposable[sorted(control_ids(lm.tokenizer) - set(lm.vocab.eos_ids))].any()
    assert gemma.vocab.proposable[gemma.tokenizer.convert_tokens_to_ids("<table>")]


def test_qwen_ends_text_at_both_of_its_end_tokens():
    """Its GGUF names only <|im_end|>; a raw prompt is ended by <|endoftext|>, which Qwen's own
    generation_config also lists. Without it, Qwen alone wrote `<|im_start|>` after 15 of 200 SQuAD
    answers (docs/RESULTS.md, "The lineup")."""
    qwen = adafuse.load_model("qwen2.5-coder-0.5b-instruct", device="cpu")
    tok = qwen.tokenizer
    assert qwen.vocab.eos_ids == tuple(sorted(tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])))
    assert qwen.eos_id == tok.convert_tokens_to_ids("<|im_end|>")      # the marker appended when scoring an end
    assert not qwen.vocab.proposable[tok.convert_tokens_to_ids("<|im_start|>")]


@pytest.mark.parametrize("branches", [1, 3])
def test_gemmas_start_of_image_branch_cannot_win(lms, branches):
    """The free-chat case of issue 15: with B = 3, Gemma's branch `<start_of_image>The` (ids 255999,
    818) won round 0 by 3.759 against 4.191 for `The`, SmolLM2 scoring the literal text as eight
    ordinary tokens, and the output began `<start_of_image>The sky is blue`."""
    trace = adafuse.generate(lms, "Write two sentences explaining why the sky is blue.",
                             DecodeConfig(branches=branches, max_new_tokens=32, prompt_format="chat"))
    assert trace.text.startswith("The sky is blue because") and "<" not in trace.text
    for rnd in trace.rounds:
        for cand in rnd.candidates:
            assert "<start_of_image>" not in cand.text and "<|" not in cand.text
            for lm in lms:
                proposed = cand.token_ids[lm.name] if lm.name in cand.proposers else []
                assert not set(proposed) & (control_ids(lm.tokenizer) - set(lm.vocab.eos_ids))
    if branches == 3:   # the round still offers B distinct spans per model: the next-best first tokens
        assert [c.text for c in trace.rounds[0].candidates][:3] == ["The", "When", "A"]
        assert len(trace.rounds[0].candidates) == 6
