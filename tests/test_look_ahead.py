"""The scoring forward's look-ahead row (score.Ahead): when a model scores another model's candidate,
the same forward also runs the greedy token after its own span; if its own span wins, that token
is its lookahead and the next round's first step costs no forward. Checked on the real pair against
the same decode with the row left out: the same text, fewer forwards."""
import pytest

import adafuse
from adafuse import DecodeConfig, rounds

PROMPT = "Question: who wrote the novel Pride and Prejudice?\nAnswer:"


def decode_without_look_ahead(lms, cfg, monkeypatch):
    real = rounds.score_ahead
    monkeypatch.setattr(rounds, "score_ahead", lambda *args: real(*args[:5], None))
    try:
        return adafuse.generate(lms, PROMPT, cfg)
    finally:
        monkeypatch.setattr(rounds, "score_ahead", real)


@pytest.mark.parametrize("tau", [0.7, 1.5])
def test_the_look_ahead_row_saves_forwards_and_changes_no_text(lms, monkeypatch, tau):
    cfg = DecodeConfig(tau=tau, max_words=3, branches=1, max_new_tokens=24)
    used = []
    real_commit = rounds.commit_span
    monkeypatch.setattr(rounds, "commit_span", lambda state, span, ahead=None: (
        used.append(ahead is not None), real_commit(state, span, ahead)))
    with_row = adafuse.generate(lms, PROMPT, cfg)
    monkeypatch.setattr(rounds, "commit_span", real_commit)
    without = decode_without_look_ahead(lms, cfg, monkeypatch)

    assert with_row.text == without.text
    assert [r.winner.text for r in with_row.rounds] == [r.winner.text for r in without.rounds]
    assert any(used), "no own span won after its model scored another candidate"
    fewer = {m: without.stats.forward_passes[m] - with_row.stats.forward_passes[m] for m in with_row.models}
    assert all(d >= 0 for d in fewer.values()) and sum(fewer.values()) > 0, fewer
    # each saved forward is a look-ahead row that the next round took as its first step
    assert sum(fewer.values()) <= sum(used)
