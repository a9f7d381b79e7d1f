"""Where a candidate span meets a stop string.

A span that reaches a stop string ends the output there, like EOS, so no model may score the text
after it: the candidate becomes the text the output will hold plus one marker of its end
(DecodeConfig.end_marker): the stop string itself ("stop") or each model's EOS token ("eos").
docs/ENGINE.md, "Stop strings", says which is the default and why.
"""
from __future__ import annotations

from dataclasses import dataclass

END_MARKERS = ("stop", "eos")


@dataclass(frozen=True)
class StopCut:
    stop: str        # the first stop string the span reaches
    kept: str        # the span's text before it: what the output holds of this span
    through: str     # the span's text through the end of that stop string
    dropped: str     # the span's text after it: never scored


def first_stop(output: str, stops: tuple[str, ...], checked: int = 0) -> tuple[int, str] | None:
    """(where, which) of the first stop string in `output`, or None. `output[:checked]` was searched
    before and held none: only a stop string that reaches past it is looked for.

    A stop string ends an output only once it holds text: matches before its first non-space
    character do not count. The stop strings delimit an answer, and a model that puts its answer
    on the next line ("English:" then "\\nThe dog ...", with stop "\\n") has not given an empty one
    (docs/ENGINE.md, "Stop strings")."""
    text_at = len(output) - len(output.lstrip())
    if not stops or text_at == len(output):
        return None
    lo = max(checked - max(len(s) for s in stops) + 1, text_at + 1)
    hits = [(i, len(s), s) for s in stops if (i := output.find(s, lo)) >= 0]
    if not hits:
        return None
    i, _, stop = min(hits)        # the earliest; at one position the shortest: least text scored
    return i, stop


def find_stop(committed: str, text: str, stops: tuple[str, ...]) -> StopCut | None:
    """Where `text`, proposed after the output `committed`, reaches a stop string, or None. The
    match ends inside `text` but may begin in the committed text's tail ("\\n" committed, then
    "\\nQuestion:" with stop "\\n\\n"): the committed text holds no match, or the output would
    have ended already."""
    whole, n = committed + text, len(committed)
    hit = first_stop(whole, stops, n)
    if hit is None:
        return None
    i, stop = hit
    end = i + len(stop)
    return StopCut(stop, whole[n:max(i, n)], whole[n:end], whole[end:])


def candidate_key(cut: StopCut, end_marker: str) -> tuple[str, bool]:
    """(text, eos) of the candidate that a span cut at `cut` becomes."""
    return (cut.through, False) if end_marker == "stop" else (cut.kept, True)
