"""Fault injection for the crash-safety tests: named points where a child run process kills itself (SIGKILL).

`points.py` lists the points; `runner.py` runs one Derive job in a fresh process, with one point armed. Product code
has no hooks: the runner wraps the function at the point before the job starts.
"""
