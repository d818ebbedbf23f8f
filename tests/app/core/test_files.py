"""core.files: a file written whole or not at all, on a real filesystem."""

import pytest

from core.files import file_leftovers_remove, file_temporary_path, file_write_atomic


def test_the_file_appears_whole_with_its_mode_and_no_temporary(tmp_path):
    path = tmp_path / "report.csv"

    def write(out) -> int:
        out.write("a,b\r\n")
        # Until the rename, the final name does not exist.
        assert not path.exists()
        return 42

    assert file_write_atomic(path=path, write=write, mode=0o640) == 42
    assert path.read_bytes() == b"a,b\r\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_a_file_being_replaced_reads_old_until_the_new_one_is_complete(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("old")

    def write(out) -> None:
        out.write("new, ünïcode")
        assert path.read_text() == "old"

    file_write_atomic(path=path, write=write)
    assert path.read_text(encoding="utf-8") == "new, ünïcode"
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_a_temporary_for_leftovers_remove(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("old")
    other = tmp_path / "notes.txt"
    other.write_text("kept")

    def write(out) -> None:
        out.write("half")
        raise RuntimeError("stopped midway")

    with pytest.raises(RuntimeError):
        file_write_atomic(path=path, write=write)
    assert path.read_text() == "old"
    assert file_temporary_path(path=path).exists()
    assert file_temporary_path(path=path).name == ".report.csv.tmp"

    file_leftovers_remove(directory=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "report.csv"]
