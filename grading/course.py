"""A course folder as nbgrader sees it: one configuration for the template, the merged gradebook and every lane.

The grader makes each of these folders itself, so it gives them one fixed layout whatever the course's own
nbgrader_config.py says: the assignment's source in source/, releases in release/, and the gradebook in
gradebook.db unless another database is named. The course's other settings travel with the folder, in
SETTINGS_FILE ({"nbgrader": settings}), so that a lane on another machine grades with the same ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

SETTINGS_FILE = "config.json"


def nbgrader_config(root: Path, settings: dict, db_url: str | None = None) -> Config:
    """nbgrader's configuration (a traitlets Config) of the course folder `root`: `settings` (the course's, as
    grading.run.nbgrader_settings reads them) in the grader's layout; the gradebook is `db_url`, else root's own."""
    from traitlets.config import Config

    config = Config(settings)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.source_directory = "source"
    config.CourseDirectory.release_directory = "release"
    config.CourseDirectory.db_url = db_url or gradebook_url(root)
    return config


def gradebook_url(root: Path) -> str:
    """The URL of the course folder's own gradebook, an SQLite file in it."""
    return f"sqlite:///{root / 'gradebook.db'}"


def nbgrader_api(config: Config) -> NbGraderAPI:
    """nbgrader's API (NbGraderAPI) on the course folder that `config` (nbgrader_config) describes."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    _stamp_gradebooks_in_process()
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def alembic_head() -> str:
    """The newest revision of nbgrader's gradebook schema, read with alembic's API in this process."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    config = AlembicConfig()
    config.set_main_option("script_location", ALEMBIC_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError(f"nbgrader's gradebook schema ({ALEMBIC_DIR}) has no head revision")
    return head


def _stamp_gradebooks_in_process() -> None:
    """Let nbgrader stamp a new gradebook without running the `alembic` command.

    nbgrader marks every gradebook it creates with its schema's newest revision, which it finds by
    running `alembic heads`: a second Python process (about a second) that must be on PATH. Reading
    the same revision in this process gives the same answer (tests/test_grading.py compares the two)
    and lets `python -m grading` run from a shell where the environment is not activated. A gradebook
    that exists already (a lane's, copied from the template) is never stamped again.
    """
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head
