"""Errors that stop the data half of the pipeline with a message a person can act on.

A DataError always names the file (or data source), the column when one is at fault, and the
problem, in one paragraph: the KFP task log, `make validate` and the tests all show
`str(error)` as is, so it has to stand on its own.
"""
from __future__ import annotations


class DataError(Exception):
    """Bad input data: missing/empty/unreadable file, bad header, bad label, schema violation,
    or a blocking anomaly found by validation. Nothing downstream may run after one."""

    def __init__(self, source: str, problem: str, column: str | None = None, hint: str = ""):
        self.source = str(source)
        self.column = column
        # One paragraph, always: messages from parsers (pandas, protobuf) can hold newlines.
        problem, hint = " ".join(str(problem).split()), " ".join(str(hint).split())
        self.problem = problem
        self.hint = hint
        where = f"column '{column}' of {self.source}" if column else self.source
        message = f"Bad data in {where}: {problem}."
        if hint:
            message += f" {hint}"
        super().__init__(message)
