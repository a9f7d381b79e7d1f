"""Evaluation harness: benchmark tasks, metrics, a resumable runner and reports.

`python -m adafuse eval --help` (see adafuse/eval/cli.py) is the entry point.
"""
