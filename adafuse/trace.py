"""The decision record of one decode: every round's proposals, candidates and scores.

`Trace.to_dict()` is the JSON schema that the CLI, the app, the eval harness and outside
checks read; `Trace.from_dict()` reads it back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Proposal:
    """What one model proposed in one round."""
    model: str
    words: list[str]              # its greedy span, word by word (leading whitespace kept)
    margins: list[float]          # p(1) - p(2) at the start of each word in `words`
    branched: bool                # stopped at an uncertain word start and branched
    spans: list[str]              # the full span texts it put forward (B of them if branched)
    eos: bool = False             # its greedy span ended with end-of-sequence

    def to_dict(self) -> dict:
        return {"model": self.model, "words": list(self.words), "margins": [round(m, 6) for m in self.margins],
                "branched": self.branched, "spans": list(self.spans), "eos": self.eos}


@dataclass
class Candidate:
    """One distinct span (deduplicated by text) and how every model scored it."""
    text: str
    proposers: list[str]
    eos: bool = False                                  # the span ends the output
    words: int = 0                                     # words in the span, as its proposer split it
    nll: dict[str, float] = field(default_factory=dict)    # model -> mean per-token NLL
    tokens: dict[str, int] = field(default_factory=dict)   # model -> tokens scored
    # model -> the scored token ids (EOS included) and how many of the model's committed ids they
    # follow: context_len < committed length means the tail was re-tokenized with the span.
    token_ids: dict[str, list[int]] = field(default_factory=dict)
    context_len: dict[str, int] = field(default_factory=dict)
    score: float = float("nan")                        # mean of nll over models; lowest wins
    # Set when the proposed span reached a stop string (adafuse/stops.py): the candidate ends the
    # output, and `dropped` is the proposal's text after the stop string, which no model scored.
    stop: str = ""
    dropped: str = ""

    def add_score(self, model: str, nll: float, token_ids: list[int], context_len: int) -> None:
        """Record how `model` scored this candidate. The per-model dicts are filled only here, so
        they always hold the same models (tests/test_round_invariants.py)."""
        self.nll[model] = nll
        self.tokens[model] = len(token_ids)
        self.token_ids[model] = token_ids
        self.context_len[model] = context_len

    def order_models(self, models: list[str]) -> None:
        """Put the per-model dicts in `models`' order (the JSON shows them so); each must be there."""
        self.nll = {m: self.nll[m] for m in models}
        self.tokens = {m: self.tokens[m] for m in models}
        self.token_ids = {m: self.token_ids[m] for m in models}
        self.context_len = {m: self.context_len[m] for m in models}

    def to_dict(self) -> dict:
        d = {"text": self.text, "proposers": list(self.proposers), "eos": self.eos, "words": self.words,
             "nll": {k: round(v, 6) for k, v in self.nll.items()}, "tokens": dict(self.tokens),
             "token_ids": {k: list(v) for k, v in self.token_ids.items()},
             "context_len": dict(self.context_len), "score": round(self.score, 6)}
        if self.stop:
            d.update(stop=self.stop, dropped=self.dropped)
        return d

    @property
    def output(self) -> str:
        """The text this candidate adds to the output before the stop-string cut: with the "eos"
        end marker its text stops short of the stop string, which is put back to be cut at."""
        return self.text + self.stop if self.stop and self.eos else self.text


@dataclass
class Round:
    index: int
    proposals: list[Proposal]
    candidates: list[Candidate]
    chosen_index: int

    @property
    def number(self) -> int:
        """The round as a user counts it, from 1 (`index`, the trace's own, counts from 0)."""
        return self.index + 1

    @property
    def chosen(self) -> str:
        return self.candidates[self.chosen_index].text

    @property
    def branched(self) -> bool:
        return any(p.branched for p in self.proposals)

    @property
    def winner(self) -> Candidate:
        return self.candidates[self.chosen_index]

    def to_dict(self) -> dict:
        return {"index": self.index, "chosen": self.chosen, "chosen_index": self.chosen_index,
                "proposals": [p.to_dict() for p in self.proposals],
                "candidates": [c.to_dict() for c in self.candidates]}


@dataclass
class Stats:
    seconds: float = 0.0
    forward_passes: dict[str, int] = field(default_factory=dict)
    new_tokens: dict[str, int] = field(default_factory=dict)   # committed output tokens, each model's own count
    stop_reason: str = ""      # eos | max_new_tokens | stop_string | context_full | cancelled

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 4), "forward_passes": dict(self.forward_passes),
                "new_tokens": dict(self.new_tokens), "stop_reason": self.stop_reason}


@dataclass
class Trace:
    prompt: str
    mode: str
    models: list[str]
    settings: dict
    rounds: list[Round] = field(default_factory=list)
    text: str = ""             # the generated continuation only (after stop-string cuts)
    stats: Stats = field(default_factory=Stats)

    def spans(self) -> list[str]:
        """The committed span of each round; the last may be cut by a stop string."""
        out, used = [], 0
        for r in self.rounds:
            if used >= len(self.text):
                break
            piece = r.chosen[: len(self.text) - used]
            out.append(piece)
            used += len(piece)
        return out

    def bracketed(self) -> str:
        """`[Singapore] [is generally a] [very safe place]`: one bracket per round."""
        return " ".join(f"[{s.strip()}]" for s in self.spans() if s.strip())

    def words_per_round(self) -> list[int]:
        return [r.winner.words for r in self.rounds]

    def to_dict(self) -> dict:
        return {"text": self.text, "prompt": self.prompt, "mode": self.mode, "models": list(self.models),
                "settings": dict(self.settings), "rounds": [r.to_dict() for r in self.rounds],
                "stats": self.stats.to_dict()}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Trace":
        rounds = []
        for r in d.get("rounds", []):
            proposals = [Proposal(p["model"], list(p["words"]), list(p["margins"]), bool(p["branched"]),
                                  list(p.get("spans", ["".join(p["words"])])), bool(p.get("eos", False)))
                         for p in r["proposals"]]
            candidates = [Candidate(c["text"], list(c["proposers"]), bool(c.get("eos", False)),
                                    int(c.get("words", 0)), dict(c["nll"]), dict(c.get("tokens", {})),
                                    {k: list(v) for k, v in c.get("token_ids", {}).items()},
                                    dict(c.get("context_len", {})), float(c["score"]),
                                    c.get("stop", ""), c.get("dropped", ""))
                          for c in r["candidates"]]
            rounds.append(Round(int(r["index"]), proposals, candidates, int(r["chosen_index"])))
        s = d.get("stats", {})
        stats = Stats(float(s.get("seconds", 0.0)), dict(s.get("forward_passes", {})),
                      dict(s.get("new_tokens", {})), s.get("stop_reason", ""))
        return cls(d.get("prompt", ""), d["mode"], list(d["models"]), dict(d["settings"]), rounds,
                   d["text"], stats)

