"""The instructor's autograding tool: nbgrader's gradebook, autograde and feedback, run in parallel and made robust.

    python -m grading autograde ASSIGNMENT SUBMISSIONS --out OUT [--jobs N]

What it adds to nbgrader: one student as one unit of work (grading.unit: the assignment's kit and the
submission's bytes in, the grades and the student's files out, no folder shared with the asker), graded
in parallel lanes (each with its own course folder and SQLite gradebook, merged at the end by one writer), a
status for every submission (grading.unit.Status: graded, timeout, crashed, invalid, missing, pending), every
kernel in a sandbox (grading.sandbox) and each notebook run twice so that hidden tests never reach the feedback
(grading.execute), cell time limits calibrated on the reference solution, credit kept before a crash,
resumable runs (OUT/results.jsonl), feedback with offline maths, a progress bar, a summary, a histogram, a
report per cell and per likely mistake, and grade files for Canvas and Moodle (grading.report). It imports
nothing from convlib.
"""
