"""nbgrader settings for this course (read by `nbgrader ...` run from the repository root and by `python -m grading`).

solutions/<assignment>/  is nbgrader's source directory (answers and hidden tests: instructors only)
exercises/<assignment>/  is its release directory (what learners download; generated, committed)
"""

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "conv-backprop"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# torch's import alone takes a few seconds on a small machine; a correct answer runs in well under a second.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True

# A learner who deletes or edits a test cell gets it back from the gradebook before grading.
c.OverwriteCells.add_missing_cells = True

# Keep feedback small if an answer prints in a loop.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 100

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
