"""What an instructor acts on, beside grades.csv: points per part, likely mistakes over the class, grade uploads.

* `OUT/report-cells.csv`: for every graded cell, its points, the class's mean and how many
  learners got full, part or no marks for it;
* `OUT/report-mistakes.csv`: every likely mistake the course's checks recognised, with the
  number of learners whose feedback names it ("the kernel gradient is flipped: 14 learners");
* `OUT/report.html`: both tables, the counts per status and the histogram, in one page that
  reads offline (the picture is inside it);
* with a roster (`--roster`), `OUT/canvas.csv` and `OUT/moodle.csv`: the scores keyed on each
  LMS's own identifiers, for its grade import.

The checks write a likely mistake as a line `likely mistake [CODE]: TEXT`
(convlib.checks.likely_mistake); MISTAKE_LINE reads it back (the grader imports nothing from
convlib, and tests/test_grading.py checks that both agree).
"""

from __future__ import annotations

import base64
import csv
import html
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from .unit import Outcome, Status

Roster = dict[str, dict[str, str]]  # student_id -> {roster column: value} (read_roster)

MISTAKE_LINE = re.compile(r"likely mistake \[(?P<code>[a-z0-9]+(?:-[a-z0-9]+)*)\]: (?P<text>[^\n]+)")

# --- the likely mistakes of one submission ---------------------------------------------------------


def mistakes_in(notebook: Path) -> dict[str, str]:
    """{code: text} of every likely mistake that the outputs of an autograded notebook (the feedback's) name."""
    import nbformat

    found: dict[str, str] = {}
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts = [output.get("text", ""), output.get("evalue", "")] + list(output.get("traceback", []))
            for text in texts:
                for match in MISTAKE_LINE.finditer(re.sub(r"\x1b\[[0-9;]*m", "", str(text))):
                    found.setdefault(match["code"], match["text"].strip())
    return found


# --- tables over the class -------------------------------------------------------------------------


def cell_table(rows: Sequence[Outcome], points: dict[str, float]) -> list[dict]:
    """Per graded cell (in notebook order): max points, the class's mean, how many learners got full, part, none.

    Over the whole class, as the gradebook holds it: a submission that could not be graded (missing, invalid,
    a kernel that never started) scores 0 in every cell.
    """
    table = []
    for name, max_points in points.items():
        scores = []
        for row in rows:
            grades = [notebook["grades"][name] for notebook in (row.cells or {}).values() if name in notebook["grades"]]
            auto, manual, _ = grades[0] if grades else (0.0, None, False)
            scores.append(float(manual if manual is not None else auto or 0.0))
        table.append({"cell": name, "max_points": max_points, "learners": len(scores),
                      "mean_points": round(statistics.mean(scores), 3) if scores else 0.0,
                      "full": sum(s >= max_points for s in scores), "part": sum(0 < s < max_points for s in scores),
                      "none": sum(s <= 0 for s in scores)})
    return table


def mistake_table(rows: Sequence[Outcome]) -> list[dict]:
    """Per likely mistake: its code, its text and the learners whose feedback names it, most frequent first."""
    learners: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for row in rows:
        for code, text in (row.mistakes or {}).items():
            learners.setdefault(code, []).append(row.student)
            texts.setdefault(code, text)
    return [{"code": code, "mistake": texts[code], "learners": len(names), "students": " ".join(sorted(names))}
            for code, names in sorted(learners.items(), key=lambda item: (-len(item[1]), item[0]))]


def write_table(table: list[dict], path: Path, columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)


# --- roster and LMS exports ----------------------------------------------------------------------------

# The roster's columns: student_id (the submission folder's name) is required; the others are the LMS's own
# identifiers of that learner, as its gradebook export shows them.
ROSTER_COLUMNS = ("student_id", "name", "canvas_id", "sis_user_id", "sis_login_id", "section", "email", "username",
                  "idnumber")
# Canvas: the first columns of its gradebook export, which its gradebook import reads back (students are
# matched on ID, SIS User ID or SIS Login ID); one column per assignment follows.
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
# Moodle: its CSV grade import matches a learner on one of these user fields, chosen on its mapping page.
MOODLE_COLUMNS = ("ID number", "Email address", "Username")


def read_roster(path: Path) -> Roster:
    """{student_id: {column: value}} from a roster CSV; a clear error for anything that is not one."""
    if not path.is_file():
        raise ValueError(f"--roster {path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in reader.fieldnames or []]
        if "student_id" not in header:
            raise ValueError(f"--roster {path}: the header must name a student_id column (the submission folders' "
                             f"names), and may name {', '.join(ROSTER_COLUMNS[1:])}; found {header or 'no header'}")
        unknown = [name for name in header if name not in ROSTER_COLUMNS]
        if unknown:
            raise ValueError(f"--roster {path}: unknown column(s) {', '.join(unknown)}; "
                             f"expected some of {', '.join(ROSTER_COLUMNS)}")
        roster: Roster = {}
        for number, entry in enumerate(reader, start=2):
            entry = {key.strip(): (value or "").strip() for key, value in entry.items() if key}
            student = entry["student_id"]
            if not student:
                raise ValueError(f"--roster {path}, line {number}: student_id is empty")
            if student in roster:
                raise ValueError(f"--roster {path}, line {number}: student_id {student!r} appears twice")
            roster[student] = entry
    return roster


def roster_problems(rows: Sequence[Outcome], roster: Roster) -> dict[str, list[str]]:
    """Roster entries without a submission folder, and submission folders without a roster entry."""
    students = {row.student for row in rows}
    return {"no_submission": sorted(set(roster) - students), "not_in_roster": sorted(students - set(roster))}


def write_canvas(rows: Sequence[Outcome], roster: Roster, column: str, max_score: float, path: Path) -> None:
    """Canvas's gradebook import: its identifier columns, then one assignment column; a learner without a
    submission folder gets an empty cell (Canvas leaves that grade as it is)."""
    scores = {row.student: row.score for row in rows}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*CANVAS_COLUMNS, column])
        writer.writerow(["Points Possible", "", "", "", "", points_text(max_score)])
        for student, entry in roster.items():
            writer.writerow([entry.get("name", ""), entry.get("canvas_id", ""), entry.get("sis_user_id", ""),
                             entry.get("sis_login_id", ""), entry.get("section", ""),
                             points_text(scores[student]) if student in scores else ""])


def write_moodle(rows: Sequence[Outcome], roster: Roster, column: str, path: Path) -> None:
    """Moodle's CSV grade import: user identifiers, then one grade item column; learners without a
    submission folder are left out (Moodle then changes nothing for them)."""
    scores = {row.student: row.score for row in rows}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*MOODLE_COLUMNS, column])
        for student, entry in roster.items():
            if student in scores:
                writer.writerow([entry.get("idnumber", ""), entry.get("email", ""), entry.get("username", ""),
                                 points_text(scores[student])])


def points_text(x: float) -> str:
    """Points as every report prints them: 11.0 as 11, 2.5 as 2.5."""
    return f"{x:g}"


# --- the page ------------------------------------------------------------------------------------------


def write_html(path: Path, assignment: str, rows: Sequence[Outcome], cells: list[dict], mistakes: list[dict],
               histogram: Path, problems: dict[str, list[str]] | None) -> None:
    counts = {status: sum(row.status == status for row in rows) for status in Status}
    scores = [row.score for row in rows]
    picture = base64.b64encode(histogram.read_bytes()).decode() if histogram.exists() else ""
    e = html.escape

    def table(head: list[str], body: list[list]) -> str:
        return ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>" for r in body)
                + "</tbody></table>")

    parts = [f"<h1>{e(assignment)}: report</h1>",
             f"<p>{len(rows)} submissions; " + ", ".join(f"{s} {n}" for s, n in counts.items() if n) + "."
             + (f" Mean score {statistics.mean(scores):.2f}, median {statistics.median(scores):g}." if scores else "")
             + "</p>"]
    if picture:
        parts.append(f'<figure><img src="data:image/png;base64,{picture}" alt="Histogram of the scores of '
                     f'{len(rows)} submissions of {e(assignment)}"><figcaption>Scores over the class.</figcaption>'
                     f"</figure>")
    parts.append("<h2>Points per graded cell</h2>")
    parts.append(table(["cell", "points", "mean", "full marks", "part", "none"],
                       [[c["cell"], points_text(c["max_points"]), f"{c['mean_points']:.2f}", c["full"], c["part"],
                         c["none"]] for c in cells]))
    parts.append("<h2>Likely mistakes the checks recognised</h2>")
    parts.append(table(["mistake", "learners", "code"], [[m["mistake"], m["learners"], m["code"]] for m in mistakes])
                 if mistakes else "<p>None.</p>")
    if problems is not None:
        parts.append("<h2>Roster</h2>")
        parts.append(f"<p>In the roster without a submission folder: "
                     f"{e(', '.join(problems['no_submission']) or 'none')}.</p><p>Submission folders not in the "
                     f"roster (left out of the LMS files): {e(', '.join(problems['not_in_roster']) or 'none')}.</p>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}")
    path.write_text(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(assignment)} report</title>"
                    f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
