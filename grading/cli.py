"""Command line: python -m grading autograde ASSIGNMENT SUBMISSIONS --out OUT [--jobs N]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .run import Options, autograde


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    a = commands.add_parser(
        "autograde", help="grade every student's notebook for one assignment",
        description="Grade a class: SUBMISSIONS holds one folder per student id (or is a zip of such folders). "
                    "Writes OUT/grades.csv, OUT/feedback/<student>/, OUT/scores.png and the gradebook.")
    a.add_argument("assignment", help="assignment name, a folder of --source (e.g. ps03-kernel-gradients)")
    a.add_argument("submissions", type=Path, help="folder with one subfolder per student id, or a .zip of it")
    a.add_argument("--out", type=Path, required=True, help="folder for grades.csv, feedback/ and scores.png")
    a.add_argument("--jobs", type=int, default=1, help="students graded at once (default 1); one BLAS thread each")
    a.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="grade on the workers of this running Dask cluster instead of in --jobs lanes here (the "
                        "README says how to start one); OUT, the gradebook and resuming work as without it")
    a.add_argument("--source", type=Path, default=Path("solutions"),
                   help="nbgrader source folder holding the assignment (default: solutions)")
    a.add_argument("--config", type=Path, default=Path("nbgrader_config.py"),
                   help="nbgrader settings to use (default: ./nbgrader_config.py)")
    a.add_argument("--timeout", type=int, default=None,
                   help="seconds per cell (default: Execute.timeout in the config)")
    a.add_argument("--time-multiple", type=float, default=10.0,
                   help="a cell's time limit is this many times its time in the reference solution, plus "
                        "--time-floor, and never above --timeout (default 10; 0: --timeout for every cell)")
    a.add_argument("--time-floor", type=float, default=5.0,
                   help="seconds added to every calibrated cell limit (default 5)")
    a.add_argument("--memory-mb", type=int, default=4096, help="address-space limit per kernel in MiB (default 4096)")
    a.add_argument("--db", default=None,
                   help="gradebook URL (default sqlite:///OUT/gradebook.db), e.g. postgresql://user@host/course")
    a.add_argument("--regrade", action="store_true",
                   help="grade every student again; by default a student already graded into OUT (OUT/results.jsonl) "
                        "with the same submission, assignment and settings is kept")
    a.add_argument("--no-sandbox", action="store_true",
                   help="run learner code without isolation (when bubblewrap cannot run here): it can then read the "
                        "hidden tests and the gradebook, use the network and write anywhere you can")
    a.add_argument("--roster", type=Path, default=None,
                   help="CSV with a student_id column (the submission folders' names) and the LMS's identifiers "
                        "(name, canvas_id, sis_user_id, sis_login_id, section, email, username, idnumber): writes "
                        "OUT/canvas.csv and OUT/moodle.csv for a grade upload")
    a.add_argument("--lms-column", default=None,
                   help="the grade column's title in canvas.csv and moodle.csv (default: the assignment's name; "
                        "for Canvas, the exported column title, e.g. 'PS03 (12345)', updates that assignment)")
    a.add_argument("--keep-work", action="store_true", help="keep OUT/.work (lane folders) for debugging")
    a.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = Options(assignment=args.assignment, submissions=args.submissions, out=args.out, jobs=args.jobs,
                      source=args.source, config=args.config, timeout=args.timeout, memory_mb=args.memory_mb,
                      db=args.db, keep_work=args.keep_work, quiet=args.quiet, regrade=args.regrade,
                      sandbox=not args.no_sandbox, time_multiple=args.time_multiple, time_floor=args.time_floor,
                      roster=args.roster, lms_column=args.lms_column, scheduler=args.scheduler)
    try:
        autograde(options)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # autograde has said what is recorded and how to go on
    return 0
