"""urban_detection.files: the project overwrites or removes only files it wrote."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
from pathlib import Path

import pytest

from urban_detection import files
from urban_detection.files import (
    MANIFEST_NAME,
    ForeignFileError,
    OutputOnInputError,
    atomic_dir,
    atomic_path,
    atomic_write,
    check_output_is_not_input,
    check_outputs_not_inputs,
    clear_owned,
    foreign_files,
    is_owned,
    record_written,
    remove_owned,
    remove_owned_tree,
    write_bytes,
    write_text,
)


def user_file(path: Path, data: bytes = b"irreplaceable user data \x00\xff") -> tuple[Path, bytes, int]:
    """A file the user put there: (path, bytes, mtime_ns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, data, path.stat().st_mtime_ns


def assert_untouched(user: tuple[Path, bytes, int]) -> None:
    path, data, mtime = user
    assert path.read_bytes() == data
    assert path.stat().st_mtime_ns == mtime


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


def leftovers(folder: Path) -> list[str]:
    """Temporary names left in ``folder`` (there must be none after any operation)."""
    return sorted(n for n in os.listdir(folder) if files.TEMP_MARK in n)


# ------------------------------------------------------------------ writing
def test_write_records_and_replaces_own_files(tmp_path):
    out = tmp_path / "out" / "a.json"
    assert write_text(out, '{"v": 1}') == out
    assert out.read_text() == '{"v": 1}' and is_owned(out)
    st = out.stat()
    [entry] = manifest(out.parent)
    assert entry == {"name": "a.json", "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    write_bytes(out, b"second, longer content")  # the project's own file: replaced
    assert out.read_bytes() == b"second, longer content" and is_owned(out)
    with atomic_write(out, mode="w") as f:
        f.write("third")
    assert out.read_text() == "third" and is_owned(out)
    assert leftovers(out.parent) == []
    assert not is_owned(tmp_path / "out" / "never_written.txt")


@pytest.mark.parametrize(
    "write",
    [
        lambda p: write_bytes(p, b"generated"),
        lambda p: write_text(p, "generated"),
        lambda p: atomic_write(p).__enter__(),
        lambda p: atomic_path(p).__enter__(),
        lambda p: files.reserve_temp(p),
    ],
    ids=["write_bytes", "write_text", "atomic_write", "atomic_path", "reserve_temp"],
)
def test_foreign_file_is_never_overwritten(tmp_path, write):
    user = user_file(tmp_path / "segment-1.tfrecord")
    with pytest.raises(ForeignFileError, match="segment-1.tfrecord") as err:
        write(user[0])
    assert err.value.path == user[0] and "not listed" in err.value.reason
    assert_untouched(user)
    assert leftovers(tmp_path) == []


def test_changed_or_replaced_own_file_becomes_foreign(tmp_path):
    edited = tmp_path / "edited.txt"
    write_text(edited, "generated")
    edited.write_text("the user's notes, longer than before")
    assert not is_owned(edited)
    with pytest.raises(ForeignFileError, match="changed since"):
        write_text(edited, "generated again")
    assert edited.read_text() == "the user's notes, longer than before"

    same_size = tmp_path / "same_size.bin"
    write_bytes(same_size, b"AAAA")
    st = same_size.stat()
    same_size.write_bytes(b"BBBB")  # same size, later modification time
    os.utime(same_size, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not is_owned(same_size)
    assert remove_owned(same_size) is False and same_size.read_bytes() == b"BBBB"


def test_symlink_at_the_target_is_foreign(tmp_path):
    user = user_file(tmp_path / "real" / "data.bin")
    link = tmp_path / "out" / "data.bin"
    link.parent.mkdir()
    link.symlink_to(user[0])
    with pytest.raises(ForeignFileError, match="symbolic link"):
        write_bytes(link, b"generated")
    assert remove_owned(link) is False
    assert link.is_symlink() and link.resolve() == user[0]
    assert_untouched(user)
    with pytest.raises(ValueError, match="links"):
        record_written(link)


def test_interrupted_write_keeps_the_previous_content(tmp_path):
    out = tmp_path / "report.json"
    write_text(out, "previous")
    before = out.stat().st_mtime_ns
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(out, mode="w") as f:
            f.write("half of the new content")
            raise RuntimeError("boom")
    assert out.read_text() == "previous" and out.stat().st_mtime_ns == before and is_owned(out)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(out) as tmp:
            tmp.write_text("written by a third-party writer")
            raise KeyboardInterrupt
    assert out.read_text() == "previous" and is_owned(out)
    fresh = tmp_path / "never.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(fresh) as f:
            f.write(b"x")
            raise RuntimeError
    assert not fresh.exists()
    assert leftovers(tmp_path) == []


def test_atomic_path_for_third_party_writers(tmp_path):
    out = tmp_path / "clips" / "trip.mp4"
    with atomic_path(out, keep_suffix=True) as tmp:
        assert tmp.parent == out.parent and tmp.suffix == ".mp4" and tmp.name.startswith(".")
        assert not out.exists()
        tmp.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    assert out.read_bytes() == b"\x00\x00\x00\x18ftypmp42" and is_owned(out)
    assert leftovers(out.parent) == []


def test_nested_atomic_writes(tmp_path):
    """A dataset's atomic_path may hand its temporary to a library writer that writes atomically too."""
    out = tmp_path / "videos" / "trip.mp4"
    with atomic_path(out, keep_suffix=True) as tmp:
        write_bytes(tmp, b"inner writer")
        with atomic_write(tmp) as f:  # and again: the reserved temporary is replaced, not refused
            f.write(b"inner writer, second pass")
    assert out.read_bytes() == b"inner writer, second pass" and is_owned(out)
    assert [e["name"] for e in manifest(out.parent)] == ["trip.mp4"]
    assert leftovers(out.parent) == []


def test_target_replaced_by_the_user_while_writing_is_kept(tmp_path):
    out = tmp_path / "trip.tfrecord"
    with pytest.raises(ForeignFileError):
        with atomic_write(out) as f:
            f.write(b"generated")
            user = user_file(out, b"the user copied a segment here meanwhile")
    assert_untouched(user)
    assert leftovers(tmp_path) == []


def test_record_written_and_remove_owned(tmp_path):
    third_party = tmp_path / "ckpt" / "ckpt-1.index"
    third_party.parent.mkdir()
    third_party.write_bytes(b"written by a checkpoint writer")
    assert not is_owned(third_party)
    assert record_written(third_party) == [third_party]
    assert is_owned(third_party)
    assert remove_owned(third_party) is True and not third_party.exists()
    assert manifest(third_party.parent) == []
    assert remove_owned(third_party) is False  # already gone
    with pytest.raises(FileNotFoundError):
        record_written(tmp_path / "missing")


def test_remove_owned_keeps_foreign_file_and_names_it(tmp_path, caplog):
    user = user_file(tmp_path / "notes.txt")
    with caplog.at_level(logging.WARNING, logger="urban_detection.files"):
        assert remove_owned(user[0]) is False
    assert str(user[0]) in caplog.text and "did not write" in caplog.text
    assert_untouched(user)


# ------------------------------------------------------------------ removing trees and folders
def test_clear_owned_keeps_the_users_segment(tmp_path, caplog):
    """The issue: a real segment copied into the synthetic folder survives regenerating."""
    folder = tmp_path / "01_raw" / "synthetic"
    user = user_file(folder / "segment-10017090168044687777_6380_000_6400_000_with_camera_labels.tfrecord")
    generated = [write_bytes(folder / f"segment-{i}_with_camera_labels.tfrecord", b"synthetic %d" % i) for i in range(3)]
    stamp = write_text(folder / "synthetic_params.json", "{}")
    with caplog.at_level(logging.WARNING, logger="urban_detection.files"):
        removed = clear_owned(folder, "*.tfrecord")
    assert sorted(removed) == sorted(generated)
    assert not any(p.exists() for p in generated)
    assert_untouched(user)
    assert user[0].name in caplog.text
    assert stamp.read_text() == "{}" and is_owned(stamp)  # does not match the pattern
    assert [e["name"] for e in manifest(folder)] == ["synthetic_params.json"]
    # a new generation writes next to the user's file, which stays untouched
    write_bytes(generated[0], b"regenerated")
    assert_untouched(user)


def test_remove_owned_tree_removes_only_project_files(tmp_path, caplog):
    root = tmp_path / "06_models" / "baseline"
    owned = [
        write_bytes(root / "checkpoints" / "ckpt-1.data", b"1"),
        write_bytes(root / "checkpoints" / "ckpt-1.index", b"2"),
        write_bytes(root / "export" / "saved_model.pb", b"3"),
        write_bytes(root / "metrics.json", b"{}"),
    ]
    user = user_file(root / "export" / "README_by_user.md", b"my notes")
    user_empty = root / "my_empty_folder"
    user_empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="urban_detection.files"):
        removed = remove_owned_tree(root)
    assert not any(p.exists() for p in owned)
    assert set(owned) <= set(removed)
    assert root / "checkpoints" in removed and not (root / "checkpoints").exists()  # emptied: removed
    assert_untouched(user)
    assert "README_by_user.md" in caplog.text
    assert (root / "export").is_dir() and user_empty.is_dir() and root.is_dir()  # still hold or are the user's
    assert sorted(p.name for p in foreign_files(root)) == ["README_by_user.md"]

    # once the user's file is gone, the folders the project emptied go too; the user's empty one stays
    user[0].unlink()
    remove_owned_tree(root)
    assert not (root / "export").exists() and user_empty.is_dir()


def test_remove_owned_tree_on_an_all_project_tree(tmp_path):
    root = tmp_path / "model"
    with atomic_dir(root) as build:
        (build / "variables").mkdir()
        (build / "assets").mkdir()  # empty, made by the project: removed with the tree
        (build / "variables" / "variables.index").write_bytes(b"idx")
        (build / "saved_model.pb").write_bytes(b"pb")
    assert is_owned(root) and is_owned(root / "assets") and is_owned(root / "variables" / "variables.index")
    removed = remove_owned_tree(root)
    assert not root.exists() and root in removed
    assert manifest(tmp_path) == []


# ------------------------------------------------------------------ directory outputs
def test_atomic_dir_builds_and_swaps(tmp_path):
    target = tmp_path / "06_models" / "exp" / "export"
    with atomic_dir(target) as build:
        assert build.parent == target.parent and not target.exists()
        (build / "saved_model.pb").write_bytes(b"v1")
        (build / "variables").mkdir()
        (build / "variables" / "v.data").write_bytes(b"weights v1")
    assert (target / "saved_model.pb").read_bytes() == b"v1" and is_owned(target)

    with atomic_dir(target) as build:
        (build / "saved_model.pb").write_bytes(b"v2")
    assert (target / "saved_model.pb").read_bytes() == b"v2"
    assert not (target / "variables").exists()  # the old folder went as a whole
    assert sorted(os.listdir(target.parent)) == [MANIFEST_NAME, "export"]  # no temporaries left

    with pytest.raises(ValueError, match="interrupted"):
        with atomic_dir(target) as build:
            (build / "saved_model.pb").write_bytes(b"v3, half written")
            raise ValueError("interrupted")
    assert (target / "saved_model.pb").read_bytes() == b"v2" and is_owned(target)
    assert sorted(os.listdir(target.parent)) == [MANIFEST_NAME, "export"]


def test_atomic_dir_refuses_a_folder_holding_foreign_files(tmp_path):
    target = tmp_path / "export"
    with atomic_dir(target) as build:
        (build / "saved_model.pb").write_bytes(b"v1")
    user = user_file(target / "user_notes.txt")
    with pytest.raises(ForeignFileError, match="user_notes.txt"):
        with atomic_dir(target):
            pytest.fail("must refuse before building")
    assert_untouched(user)
    assert (target / "saved_model.pb").read_bytes() == b"v1"

    # a foreign file where the folder should go
    user2 = user_file(tmp_path / "checkpoint")
    with pytest.raises(ForeignFileError, match="checkpoint"):
        with atomic_dir(user2[0]):
            pass
    assert_untouched(user2)
    assert leftovers(tmp_path) == []


def test_write_refuses_a_directory(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        write_text(tmp_path / "folder", "x")
    with pytest.raises(ValueError, match="manifest"):
        write_text(tmp_path / MANIFEST_NAME, "x")


# ------------------------------------------------------------------ parallel writers
_WRITER = """
import os
from urban_detection.files import write_text
start.wait(30)
for i in range(n):
    write_text(os.path.join(folder, f"{tag}_{i:03d}.txt"), f"{tag} {i}")
    for k in range(3):  # rewritten by both, often: the manifest gets compacted while the other one appends
        write_text(os.path.join(folder, "shared.txt"), f"{tag} {i} {k}")
"""


def test_concurrent_writers_all_land_in_the_manifest(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    n = 40
    procs = [
        ctx.Process(target=exec, args=(_WRITER, {"start": start, "n": n, "folder": str(tmp_path), "tag": tag}))
        for tag in ("p1", "p2")
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    written = sorted(tmp_path.glob("p?_*.txt"))
    assert len(written) == 2 * n
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    entries = {json.loads(line)["name"] for line in lines}  # every line is whole JSON
    assert len(lines) < 2 * n * 4  # compacted on the way (one line per write otherwise)
    assert entries == {p.name for p in written} | {"shared.txt"}
    assert all(is_owned(p) for p in written) and is_owned(tmp_path / "shared.txt")
    assert leftovers(tmp_path) == []
    assert len(clear_owned(tmp_path)) == 2 * n + 1
    assert os.listdir(tmp_path) == [MANIFEST_NAME]


# ------------------------------------------------------------------ outputs on inputs
def test_outputs_on_inputs_are_detected(tmp_path):
    raw = tmp_path / "data" / "01_raw"
    raw.mkdir(parents=True)
    seg = raw / "seg.tfrecord"
    seg.write_bytes(b"segment")
    trips = tmp_path / "data" / "02_intermediate" / "trips"

    check_outputs_not_inputs({"trips": trips, "report": tmp_path / "r.json"}, {"source_dir": raw, "skip": None})

    with pytest.raises(OutputOnInputError) as err:  # the same folder
        check_outputs_not_inputs({"trips": raw}, {"source_dir": tmp_path / "data" / ".." / "data" / "01_raw"})
    assert "'trips'" in str(err.value) and "'source_dir'" in str(err.value) and "same path" in str(err.value)

    with pytest.raises(OutputOnInputError, match=r"lies inside input 'source_dir'"):  # file inside the input folder
        check_outputs_not_inputs({"frame_index": raw / "frame_index.parquet"}, {"source_dir": raw})

    with pytest.raises(OutputOnInputError, match=r"contains input 'segment'"):  # output folder around an input
        check_outputs_not_inputs({"trips": tmp_path / "data"}, {"segment": seg})

    link = tmp_path / "looks_elsewhere"
    link.symlink_to(raw, target_is_directory=True)
    with pytest.raises(OutputOnInputError, match="looks_elsewhere") as err:  # symlinked spelling of the input
        check_outputs_not_inputs({"trips": link}, {"source_dir": raw})
    assert str(raw) in str(err.value)

    hard = tmp_path / "hard.tfrecord"
    os.link(seg, hard)
    with pytest.raises(OutputOnInputError, match="same file"):
        check_output_is_not_input(hard, seg, output_name="trip output", input_name="input file")


def test_processed_input_named_like_its_trip_output(tmp_path):
    """A processed file ingested into its own folder: its trip output is the very same file."""
    trips = tmp_path / "trips"
    src = trips / "segment-1.tfrecord"
    user = user_file(src, b"processed tf.Examples")
    alias = tmp_path / "alias"
    alias.symlink_to(trips, target_is_directory=True)
    with pytest.raises(OutputOnInputError, match="segment-1.tfrecord"):
        check_output_is_not_input(alias / "segment-1.tfrecord", src, output_name="trip output", input_name="input")
    check_output_is_not_input(trips / "segment-1.out.tfrecord", src)  # a sibling is fine
    assert_untouched(user)


def test_errors_survive_worker_processes():
    e = pickle.loads(pickle.dumps(ForeignFileError("/data/x.tfrecord", "not listed")))
    assert isinstance(e, FileExistsError) and e.path == Path("/data/x.tfrecord") and "x.tfrecord" in str(e)
    o = pickle.loads(pickle.dumps(OutputOnInputError("output 'a' lies inside input 'b'")))
    assert str(o) == "output 'a' lies inside input 'b'"


# ------------------------------------------------------------------ the library writers follow the rule
@pytest.fixture(scope="module")
def segment(tmp_path_factory) -> Path:
    """One tiny synthetic raw segment, written by the project."""
    from urban_detection.waymo.synthetic import write_synthetic_trips

    [seg] = write_synthetic_trips(tmp_path_factory.mktemp("raw"), 1, 2, width=96, height=64, cameras=("FRONT",))
    return seg


def test_synthetic_generator_never_overwrites_a_users_segment(tmp_path, segment):
    from urban_detection.waymo.synthetic import write_synthetic_trips

    folder = tmp_path / "01_raw" / "synthetic"
    real = user_file(folder / "segment-10017090168044687777_6380_000_6400_000_with_camera_labels.tfrecord")
    same_name = user_file(folder / segment.name, b"the user's own file under the generated name")
    with pytest.raises(ForeignFileError, match=segment.name):
        write_synthetic_trips(folder, 1, 2, width=96, height=64, cameras=("FRONT",))
    assert_untouched(real)
    assert_untouched(same_name)
    assert leftovers(folder) == []

    same_name[0].unlink()  # the user moved it away: now the generator writes, and records its file
    [written] = write_synthetic_trips(folder, 1, 2, width=96, height=64, cameras=("FRONT",))
    assert written.read_bytes() == segment.read_bytes() and is_owned(written)
    assert clear_owned(folder, "*.tfrecord") == [written]
    assert_untouched(real)


def test_ingest_output_on_its_input_or_on_a_users_file(tmp_path, segment):
    from urban_detection.waymo.ingest import convert_trip, ingest_files

    src = tmp_path / "trips" / segment.name
    src.parent.mkdir()
    src.write_bytes(segment.read_bytes())
    user = (src, src.read_bytes(), src.stat().st_mtime_ns)
    alias = tmp_path / "alias"
    alias.symlink_to(src.parent, target_is_directory=True)
    for out in (src, alias / src.name):  # a processed input named like its trip output
        with pytest.raises(OutputOnInputError, match=src.name):
            convert_trip(src, out, size=(32, 48), stride=1)
    with pytest.raises(ValueError):  # the folder ingested into itself: no trip output over its input
        ingest_files([src], src.parent, workers=1, size=(32, 48), stride=1, progress=False)
    assert_untouched(user)

    out = tmp_path / "02_intermediate" / src.name
    theirs = user_file(out, b"a file the user keeps here")
    with pytest.raises(ForeignFileError, match=out.name):
        convert_trip(src, out, size=(32, 48), stride=1)
    assert_untouched(theirs)
    assert leftovers(out.parent) == []

    out.unlink()
    assert convert_trip(src, out, size=(32, 48), stride=1).frames_written == 2
    assert is_owned(out)
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"\xff" * 40)  # nothing usable: the earlier (project-written) output goes
    assert convert_trip(empty, out).frames_written == 0
    assert not out.exists() and leftovers(out.parent) == []
    assert_untouched(user)


def test_write_video_refuses_a_users_file(tmp_path):
    import numpy as np

    from urban_detection.detection.video import write_video

    frames = [np.full((16, 24, 3), 40 * i, np.uint8) for i in range(3)]
    user = user_file(tmp_path / "clip.gif", b"GIF89a the user's own animation")
    with pytest.raises(ForeignFileError, match="clip.gif"):
        write_video(iter(frames), user[0], fps=5)
    assert_untouched(user)
    out = tmp_path / "out" / "clip.gif"
    assert write_video(frames, out, fps=5) == 3 and is_owned(out)
    with pytest.raises(ValueError, match="no frames"):
        write_video([], out)
    assert is_owned(out) and leftovers(out.parent) == []
