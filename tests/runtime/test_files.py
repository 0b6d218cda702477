import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.errors import OutputError
from runtime.files import atomic_path, write_json


def test_write_json_replaces_the_file_whole(tmp_path):
    dest = tmp_path / "r.json"
    write_json(dest, {"a": 1})
    write_json(dest, {"a": 2})
    assert json.loads(dest.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert dest.stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_a_failure_midway_leaves_the_previous_file_and_no_temporary(tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_disk_full_is_an_output_error_and_nothing_is_half_written(tmp_path, monkeypatch):
    dest = tmp_path / "r.json"
    dest.write_text("old")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match=r"r.json: cannot write \(No space left on device\)"):
        write_json(dest, {"a": 1})
    monkeypatch.undo()
    assert dest.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_unwritable_destination_is_an_output_error(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        write_json(not_a_folder / "r.json", {})


def test_bench_output_to_an_unwritable_place_is_one_line(tiny_model, tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--model",
            str(tiny_model),
            "--runs",
            "3",
            "--batch-sizes",
            "1",
            "--output",
            str(tmp_path / "file" / "b.json"),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--output" in result.stderr and "b.json: expected an existing folder" in result.stderr


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    # A writer SIGKILLed mid-write (Ray's driver, adopt) leaves its temporary beside the output.
    dest = tmp_path / "scores.jsonl"
    code = f"""
import time
from runtime.files import atomic_path
with atomic_path({str(dest)!r}) as tmp:
    tmp.write_text("half")
    print("writing", flush=True)
    time.sleep(60)
"""
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    (left,) = tmp_path.glob(".scores.jsonl.tmp-*")
    alive = tmp_path / f".scores.jsonl.tmp-{os.getpid()}-x.jsonl"  # a writer still at work
    alive.write_text("mine")
    other = tmp_path / ".scores.jsonl.tmp-notes"  # not of our naming: not ours to remove
    other.write_text("keep")

    write_json(dest, {"ok": 1})

    assert json.loads(dest.read_text()) == {"ok": 1}
    assert not left.exists() and alive.exists() and other.exists()


def _socket_file(folder: Path) -> Path:
    import socket

    path = folder / "s.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays
    return path


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "fifo")
    return folder / "fifo"


def _link_to(target: str):
    def make(folder: Path) -> Path:
        (folder / "link").symlink_to(target)
        return folder / "link"

    return make


NOT_FILES = {
    "folder": (lambda folder: folder, "a folder"),
    "fifo": (_fifo, "a FIFO"),
    "socket": (_socket_file, "a socket"),
    "character-device": (_link_to("/dev/null"), "a character device"),
    "block-device": (_link_to("/dev/loop0"), "a block device"),
}


@pytest.mark.parametrize("kind", list(NOT_FILES))
def test_writing_over_what_is_not_a_file_is_refused_saying_what_it_is(tmp_path, kind):
    from runtime.files import writable_target

    make, found = NOT_FILES[kind]
    if kind == "block-device" and not Path("/dev/loop0").exists():
        pytest.skip("no block device /dev/loop0 on this machine")
    dest = make(tmp_path)
    with pytest.raises(OutputError) as refused:
        writable_target(dest)
    named = dest.resolve()  # a link is refused by what it points to
    assert str(refused.value) == f"{named}: expected a regular file to write, found {found}"


def test_json_is_written_indented_by_two_with_a_final_newline(tmp_path):
    write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'


@pytest.mark.parametrize(
    ("rows", "text"),
    [([], "\r\n"), ([{"a": 1, "b": "x,y"}], 'a,b\r\n1,"x,y"\r\n')],
    ids=["no-rows", "one-row"],
)
def test_csv_has_a_header_and_one_line_per_row(tmp_path, rows, text):
    from runtime.files import write_csv

    write_csv(tmp_path / "r.csv", rows)
    assert (tmp_path / "r.csv").read_bytes().decode() == text
