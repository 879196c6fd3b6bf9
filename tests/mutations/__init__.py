"""Classic mistakes per assignment, one module each (CONTRIBUTING.md, section 5).

Each module names its ASSIGNMENT and defines MUTATIONS = {name: {answer grade_id: cell source}}: the source is
pasted into the answer cell (the whole cell replaced), and each mutation must make at least one graded test cell
fail. Most are the reference answer of a cell, read from solutions/, with a few lines changed:
`classroom.edits(ASSIGNMENT)` makes them, and checks that each line to change occurs exactly once.
MESSAGES = {name: text} is what the visible tests' message must say for some mutations; GRADED lists those also
graded end to end. tests/test_mutations.py injects every mutation into a submission, grades it, and requires it
to lose points, while the reference answers score full marks.
"""
