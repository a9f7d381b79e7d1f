"""Qualitative case inspection: open evaluation runs (or traces), find the items that matter
(AdaFuse right where every model alone failed, and the reverse) and show how it decided.

`python -m adafuse cases --help` (adafuse/cases/cli.py) and the app's Cases view use it.
"""
from .load import Case, CasesError, MethodInfo, Result, Run, TraceInfo, load_trace, open_cases
from .select import OUTCOMES, SORTS, Query, Verdict, page, select

__all__ = ["Case", "CasesError", "MethodInfo", "Result", "Run", "TraceInfo", "load_trace", "open_cases",
           "OUTCOMES", "SORTS", "Query", "Verdict", "page", "select"]
