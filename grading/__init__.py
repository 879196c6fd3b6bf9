"""The instructor's autograding tool: nbgrader's gradebook, autograde and feedback, run in parallel and made robust.

    python -m grading autograde ASSIGNMENT SUBMISSIONS --out OUT [--jobs N]

What it adds to nbgrader: parallel lanes (each with its own course folder and SQLite
gradebook, merged at the end by one writer), a status for every submission (graded,
timeout, crashed, invalid, missing), every kernel in a sandbox (grading.sandbox), feedback without hidden
tests, a progress bar, a summary and a histogram. It imports nothing from convlib.
"""
