"""Imported once by the fork server that `grading.run` forks grading children from (see `grading._one`)."""

from ._one import preload

preload()
