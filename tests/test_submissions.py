"""Finding the students' notebooks (grading/submissions.py), before any of them is graded.

`unpack` extracts the zip an instructor downloads from the learning platform: a member whose name would land
outside the extraction folder (`..`, an absolute path, a drive), or a zip that declares more bytes than the
module's limit, must stop it with a message that names the problem, before anything is written. `collect` then
finds one notebook per student folder, and gives every folder it cannot grade a status and a reason, so that
the student still has a row in grades.csv: an id outside the allowed characters or length, no notebook,
several notebooks none of which has the assignment's name, a notebook over the size limit.

The expected results are read from the module's docstrings and error messages, not from its output. Every
test here was seen to fail with the line it guards broken (the commit that added this file lists the breaks).
"""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import nbformat
import pytest

from grading import submissions

pytestmark = pytest.mark.grading

EXPECTED = "ps01-chain-rule.ipynb"  # the assignment's notebook name, as grading.run passes it to collect


def _notebook_text(*lines: str) -> str:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("\n".join(lines))]))


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, str | bytes]]) -> Path:
    """A zip holding `members` in order, each (name or ZipInfo, data); names are kept exactly as given."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    """A member that a Unix zip tool would restore as a symbolic link to `target`."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def _student(folder: Path, student: str, *notebooks: str, text: str | None = None) -> None:
    for name in notebooks:
        path = folder / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text is not None else _notebook_text(f"# {student}: {name}"))


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every path below `folder`: a file's bytes, or 'link'/'dir'."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = "link" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the extraction folder, holding one file, that no extraction may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.ipynb").write_text("the instructor's own file")
    return folder


# --- unpack: names that point outside the extraction folder


@pytest.mark.parametrize("name", ["../evil.ipynb", "alice/../../evil.ipynb", "{outside}/evil.ipynb",
                                  "\\evil.ipynb", "C:/evil.ipynb"],
                         ids=["parent", "parent-inside-a-student", "absolute", "backslash-root", "drive"])
def test_unpack_unsafe_member_name_is_refused_and_named(tmp_path, outside, name):
    name = name.format(outside=outside)
    archive = _zip(tmp_path / "class.zip", [("alice/ps01-chain-rule.ipynb", _notebook_text("x = 1")),
                                            (name, _notebook_text("import os"))])
    before = _tree(tmp_path)
    with pytest.raises(ValueError) as refused:
        submissions.unpack(archive, tmp_path / "into")
    assert "unsafe path" in str(refused.value) and repr(name) in str(refused.value), str(refused.value)
    # nothing written anywhere: the names are checked before the first member is extracted
    assert {k: v for k, v in _tree(tmp_path).items() if k.split("/")[0] != "into"} == before
    assert _tree(tmp_path / "into") == {}


def test_unpack_symlink_member_becomes_no_link(tmp_path, outside):
    # zipfile restores no symbolic links: a link member is written as a plain file holding the target's path,
    # so neither it nor a member "under" it can reach `outside`
    archive = _zip(tmp_path / "class.zip", [
        _symlink_member("alice/ps01-chain-rule.ipynb", str(outside / "secret.ipynb")),
        _symlink_member("bob/work", str(outside)),
        ("bob/work/ps01-chain-rule.ipynb", _notebook_text("x = 1")),
    ])
    before = _tree(outside)
    # bob's second member cannot be written below a plain file: unpack says so, naming the archive, and
    # alice's link never becomes one
    with pytest.raises(ValueError, match=r"class\.zip cannot be unpacked: NotADirectoryError"):
        submissions.unpack(archive, tmp_path / "into")
    assert _tree(outside) == before
    assert not [p for p in (tmp_path / "into").rglob("*") if p.is_symlink()]


def test_unpack_symlink_member_alone_is_a_plain_file(tmp_path, outside):
    archive = _zip(tmp_path / "class.zip", [_symlink_member("alice/ps01-chain-rule.ipynb",
                                                            str(outside / "secret.ipynb"))])
    folder = submissions.unpack(archive, tmp_path / "into")
    member = folder / "alice" / "ps01-chain-rule.ipynb"
    assert not member.is_symlink() and member.read_text() == str(outside / "secret.ipynb")
    # collect reads the member as the notebook it claims to be, and finds it is not one
    [alice] = submissions.collect(folder, EXPECTED)
    assert (alice.student, alice.status, alice.notebook) == ("alice", "invalid", None)


# --- unpack: size


def _declaring(path: Path, size: int) -> Path:
    """`path`, a zip of one small stored member, rewritten to declare `size` uncompressed bytes for it.

    A zip bomb declares its sizes honestly and unpacks to them; building one of gigabytes would take this test
    seconds, so the sizes in the member's two headers (local at offset 22, central directory at 24) are set
    instead: unpack must refuse on the declaration alone, before extracting anything.
    """
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))
    return path


def test_unpack_zip_declaring_more_than_the_limit_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("alice/ps01-chain-rule.ipynb", "0" * 1000)
    archive_path = _declaring(tmp_path / "bomb.zip", submissions.MAX_ZIP_BYTES + 1)
    with zipfile.ZipFile(archive_path) as archive:  # the forged size is what a reader of the zip sees
        assert archive.infolist()[0].file_size == submissions.MAX_ZIP_BYTES + 1
    with pytest.raises(ValueError, match="limit"):
        submissions.unpack(archive_path, tmp_path / "into")
    assert _tree(tmp_path / "into") == {}


def test_unpack_limit_counts_every_member_together(tmp_path, monkeypatch):
    # three members of real, highly compressible data, each under the limit, together over it (the limit is
    # made small so that the zip takes milliseconds to build)
    monkeypatch.setattr(submissions, "MAX_ZIP_BYTES", 2**20)
    archive = _zip(tmp_path / "class.zip", [(f"{s}/ps01-chain-rule.ipynb", " " * 400_000) for s in "abc"])
    assert archive.stat().st_size < 20_000
    with pytest.raises(ValueError, match="limit"):
        submissions.unpack(archive, tmp_path / "into")
    assert _tree(tmp_path / "into") == {}


def test_collect_notebook_over_the_size_limit_is_invalid(tmp_path):
    # a valid notebook padded with whitespace, which JSON allows: without the limit it would be read and graded
    padded = _notebook_text("x = 1") + " " * (submissions.MAX_NOTEBOOK_BYTES + 1)
    archive = _zip(tmp_path / "class.zip", [("alice/ps01-chain-rule.ipynb", padded),
                                            ("bob/ps01-chain-rule.ipynb", _notebook_text("x = 1"))])
    alice, bob = submissions.collect(submissions.unpack(archive, tmp_path / "into"), EXPECTED)
    assert (alice.student, alice.status, alice.notebook) == ("alice", "invalid", None)
    assert "limit" in alice.detail
    assert (bob.student, bob.status) == ("bob", None) and bob.notebook is not None


# --- unpack: the shape of the archive


def test_unpack_zip_of_the_folder_itself_returns_the_folder_inside(tmp_path):
    archive = _zip(tmp_path / "class.zip", [("class/alice/ps01-chain-rule.ipynb", _notebook_text("x = 1")),
                                            ("class/bob/ps01-chain-rule.ipynb", _notebook_text("x = 2")),
                                            ("__MACOSX/class/._alice", b"\x00")])
    folder = submissions.unpack(archive, tmp_path / "into")
    assert folder == tmp_path / "into" / "class"
    assert [s.student for s in submissions.collect(folder, EXPECTED)] == ["alice", "bob"]


@pytest.mark.parametrize("members", [
    ["alice/work/ps01-chain-rule.ipynb", "bob/v2/ps01-chain-rule.ipynb"],  # each notebook in a subfolder
    ["alice/ps01-chain-rule.ipynb", "alice/data/image.npy"],  # one student, with a folder of her own
], ids=["two-students", "one-student-with-a-subfolder"])
def test_unpack_zip_of_student_folders_returns_the_extraction_folder(tmp_path, members):
    archive = _zip(tmp_path / "class.zip", [(name, _notebook_text("x = 1")) for name in members])
    folder = submissions.unpack(archive, tmp_path / "into")
    assert folder == tmp_path / "into"
    assert [row.student for row in submissions.collect(folder, EXPECTED)] == sorted({m.split("/")[0] for m in members})


def test_unpack_file_that_is_not_a_zip_is_refused(tmp_path):
    not_a_zip = tmp_path / "class.zip"
    not_a_zip.write_text("alice,bob\n")
    with pytest.raises(ValueError, match="not a zip"):
        submissions.unpack(not_a_zip, tmp_path / "into")


# --- collect: several notebooks in one student folder


def test_collect_several_notebooks_takes_the_expected_name(tmp_path):
    _student(tmp_path, "alice", "old/attempt.ipynb", EXPECTED, "scratch.ipynb")
    [alice] = submissions.collect(tmp_path, EXPECTED)
    assert (alice.status, alice.notebook) == (None, tmp_path / "alice" / EXPECTED)


def test_collect_expected_name_twice_takes_the_one_at_the_top(tmp_path):
    _student(tmp_path, "alice", "old/" + EXPECTED, EXPECTED)
    [alice] = submissions.collect(tmp_path, EXPECTED)
    assert (alice.status, alice.notebook) == (None, tmp_path / "alice" / EXPECTED)


def test_collect_expected_name_twice_in_subfolders_is_invalid(tmp_path):
    # which of the two is the submission? Not for the grader to guess: the student is told, with both paths
    _student(tmp_path, "bob", "v1/" + EXPECTED, "v2/" + EXPECTED)
    [bob] = submissions.collect(tmp_path, EXPECTED)
    assert (bob.status, bob.notebook) == ("invalid", None)
    assert f"2 notebooks named {EXPECTED} (v1/{EXPECTED}, v2/{EXPECTED})" in bob.detail


def test_collect_leaves_out_symbolic_links(tmp_path):
    # a student folder (given as a folder, not a zip) holding a link to a notebook elsewhere: not read
    elsewhere = tmp_path / "elsewhere"
    _student(elsewhere, "mallory", EXPECTED)
    (tmp_path / "class" / "mallory").mkdir(parents=True)
    (tmp_path / "class" / "mallory" / EXPECTED).symlink_to(elsewhere / "mallory" / EXPECTED)
    [mallory] = submissions.collect(tmp_path / "class", EXPECTED)
    assert (mallory.status, mallory.notebook) == ("missing", None)


def test_collect_several_notebooks_none_expected_is_invalid(tmp_path):
    _student(tmp_path, "bob", "a.ipynb", "b.ipynb")
    [bob] = submissions.collect(tmp_path, EXPECTED)
    assert (bob.student, bob.status, bob.notebook) == ("bob", "invalid", None)
    assert EXPECTED in bob.detail


def test_collect_single_notebook_of_any_name_beside_its_checkpoint(tmp_path):
    # a download renamed by the browser, and Jupyter's checkpoint copy of it, which is not a second notebook
    _student(tmp_path, "carol", "Untitled (1).ipynb", ".ipynb_checkpoints/Untitled (1)-checkpoint.ipynb")
    [carol] = submissions.collect(tmp_path, EXPECTED)
    assert (carol.status, carol.notebook) == (None, tmp_path / "carol" / "Untitled (1).ipynb")


def test_collect_folder_without_notebook_is_missing(tmp_path):
    (tmp_path / "dave").mkdir()
    (tmp_path / "dave" / "answers.py").write_text("x = 1\n")
    [dave] = submissions.collect(tmp_path, EXPECTED)
    assert (dave.student, dave.status, dave.notebook) == ("dave", "missing", None)


# --- collect: student ids


@pytest.mark.parametrize("student", ["Ann Lee", "José", "学生", "a" * 101, "_first", "-first", "a:b", "tab\there"],
                         ids=["space", "accent", "cjk", "101-chars", "leading-underscore", "leading-dash", "colon",
                              "tab"])
def test_collect_student_id_outside_the_rule_is_invalid_with_its_row(tmp_path, student):
    # the rule, in collect's message: letters, digits and _.@+- (at most 100), beginning with a letter or digit
    _student(tmp_path, student, EXPECTED)
    _student(tmp_path, "zoe", EXPECTED)
    rows = submissions.collect(tmp_path, EXPECTED)
    assert [row.student for row in rows] == sorted([student, "zoe"])
    [odd] = [row for row in rows if row.student == student]
    assert (odd.status, odd.notebook) == ("invalid", None) and "at most 100" in odd.detail


@pytest.mark.parametrize("student", ["a" * 100, "jo.doe@uni.example", "s1234_x+y-z", "7"],
                         ids=["100-chars", "email", "punctuation", "one-digit"])
def test_collect_student_id_inside_the_rule_is_graded(tmp_path, student):
    _student(tmp_path, student, EXPECTED)
    [row] = submissions.collect(tmp_path, EXPECTED)
    assert (row.student, row.status, row.notebook) == (student, None, tmp_path / student / EXPECTED)


def test_collect_hidden_and_platform_folders_are_not_students(tmp_path):
    _student(tmp_path, ".alice", EXPECTED)
    _student(tmp_path, ".ipynb_checkpoints", EXPECTED)
    _student(tmp_path, "__MACOSX", EXPECTED)
    _student(tmp_path, "bob", EXPECTED)
    (tmp_path / "roster.csv").write_text("bob\n")
    assert [row.student for row in submissions.collect(tmp_path, EXPECTED)] == ["bob"]


def test_collect_ids_differing_only_by_case_are_two_students_sorted(tmp_path):
    for student in ["bob", "alice", "Alice", "ALICE", "carol"]:  # made in an order that is not the sorted one
        _student(tmp_path, student, EXPECTED, text=_notebook_text(f"# {student}"))
    rows = submissions.collect(tmp_path, EXPECTED)
    assert [row.student for row in rows] == ["ALICE", "Alice", "alice", "bob", "carol"]
    for row in rows:
        assert row.status is None and f"# {row.student}" in row.notebook.read_text()


def test_collect_odd_ids_from_a_zip_keep_their_names(tmp_path):
    archive = _zip(tmp_path / "class.zip", [(f"{s}/{EXPECTED}", _notebook_text("x = 1"))
                                            for s in ["José", "Ann Lee", "ann"]])
    rows = submissions.collect(submissions.unpack(archive, tmp_path / "into"), EXPECTED)
    assert [(row.student, row.status) for row in rows] == [("Ann Lee", "invalid"), ("José", "invalid"),
                                                           ("ann", None)]
