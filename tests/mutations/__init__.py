"""Classic mistakes per assignment, each a full replacement of one or more answer cells.

Each module defines MUTATIONS = {name: {answer grade_id: cell source}}. tests/test_mutations.py
injects every mutation into a submission, grades it with `python -m grading`, and requires it to
lose points, while the reference answers score full marks.
"""
