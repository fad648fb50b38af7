"""``data=folder``'s scan: regular files only, symlinks kept inside the folder, progress, and
the cached index (a second open does not list the files again; a changed folder is noticed)."""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import sys
import threading
import typing
from pathlib import Path

import numpy as np
import pytest
from ssl_datasets import folder, index, progress, scan

from ssl_core import UserError

sys.path.insert(0, str(Path(__file__).parent))
from folder_data import build, cache_files, save_classes, save_png, settle, warnings_of  # noqa: E402


def identity(root: Path) -> dict[str, typing.Any]:
    """What names a folder's index (see ``FolderDataset._folder_index``)."""
    return {
        "kind": "folder",
        "root": os.path.realpath(root),
        "extensions": list(scan.IMAGE_EXTENSIONS),
    }


def no_scan(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the folder was scanned again")

    monkeypatch.setattr(folder, "scan_folder", fail)


def split_of(data) -> tuple[list[str], list[str], list[int], list[int], list[str] | None]:
    return (
        data.train.paths,
        data.val.paths if data.val is not None else [],
        data.train.labels.tolist(),
        data.val.labels.tolist() if data.val is not None else [],
        data.classes,
    )


# --- regular files only ----------------------------------------------------------------------


def in_thread(call: typing.Callable[[], typing.Any], timeout: float = 20.0) -> typing.Any:
    """``call()`` in a daemon thread; fails (instead of hanging) when it blocks."""
    result: dict[str, typing.Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the scan blocked"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_pipe_named_like_an_image_is_skipped_without_being_opened(tmp_path, capsys):
    root = tmp_path / "images"
    save_png(root / "a.png")
    save_png(root / "b.png")
    os.mkfifo(root / "pipe.jpg")  # opening it for reading would block until a writer comes
    os.mkfifo(root / "pipe.txt")  # not named like an image: not mentioned
    data = in_thread(lambda: build(path=str(root)))
    assert [Path(p).name for p in data.train.paths] == ["a.png", "b.png"]
    assert warnings_of(capsys.readouterr().err) == [
        f"warning: skipped 1 special file (pipe, socket or device) under {root}: pipe.jpg"
    ]


def test_symlinks_are_followed_only_inside_the_folder(tmp_path, capsys):
    root, outside = tmp_path / "images", tmp_path / "elsewhere"
    save_png(root / "cats" / "a.png")
    save_png(root / "dogs" / "b.png")
    save_png(root / "shared" / "c.png")
    save_png(outside / "secret.png")
    save_png(outside / "more" / "d.png")
    (root / "cats" / "inside.png").symlink_to(root / "shared" / "c.png")
    (root / "dogs" / "linked").symlink_to(root / "shared", target_is_directory=True)
    (root / "cats" / "out.png").symlink_to(outside / "secret.png")
    (root / "dogs" / "outdir").symlink_to(outside / "more", target_is_directory=True)
    (root / "dogs" / "gone.png").symlink_to(root / "nothing.png")
    data = build(path=str(root), val_fraction=0.5)
    paths = sorted(Path(p).relative_to(root).as_posix() for p in data.train.paths + data.val.paths)
    # shared/ is reached first through dogs/linked, so it is listed there (once)
    assert paths == ["cats/a.png", "cats/inside.png", "dogs/b.png", "dogs/linked/c.png"]
    assert data.classes == ["cats", "dogs"]
    (line,) = warnings_of(capsys.readouterr().err)
    assert line.startswith(
        "warning: skipped 2 symlinks leading outside the folder and 1 broken symlink under "
        f"{root}: cats/out.png, dogs/outdir/, dogs/gone.png; "
    )
    assert "give their folder as data.path or name the files in a data.file_list" in line


def test_a_symlink_loop_is_listed_once(tmp_path, capsys):
    root = tmp_path / "images"
    save_png(root / "a" / "x.png")
    (root / "a" / "again").symlink_to(root, target_is_directory=True)
    data = build(path=str(root))
    assert [Path(p).relative_to(root).as_posix() for p in data.train.paths] == ["a/x.png"]
    assert capsys.readouterr().err == ""


def test_all_links_leading_outside_is_the_no_images_error_naming_them(tmp_path):
    root, outside = tmp_path / "images", tmp_path / "store"
    save_png(outside / "x.png")
    root.mkdir()
    (root / "x.png").symlink_to(outside / "x.png")
    with pytest.raises(UserError) as info:
        build(path=str(root))
    assert str(info.value).endswith(
        "(any case); skipped 1 symlink leading outside the folder (x.png)"
    )


def test_strict_does_not_stop_on_skipped_links(tmp_path, capsys):
    root = tmp_path / "images"
    save_png(root / "a.png")
    save_png(root / "b.png")
    (root / "c.png").symlink_to(tmp_path / "missing.png")
    data = build(path=str(root), strict=True)
    assert len(data.train) == 2
    assert "1 broken symlink" in capsys.readouterr().err


# --- the cached index ------------------------------------------------------------------------


def test_a_second_open_uses_the_index_and_gives_the_same_split(tmp_path, monkeypatch):
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    first = build(path=str(root), seed=3)
    (cached,) = cache_files()
    no_scan(monkeypatch)
    second = build(path=str(root), seed=3)
    assert split_of(second) == split_of(first)
    assert first.classes == ["class0", "class1", "class2"]
    assert np.array_equal(second.train[0][0], first.train[0][0])
    # the index is the list of names; the split is drawn from trainer.seed on every open
    assert split_of(build(path=str(root), seed=4))[1] != split_of(first)[1]
    assert cache_files() == [cached]


def test_the_same_folder_by_another_path_shares_the_index(tmp_path, monkeypatch):
    root = tmp_path / "images"
    save_classes(root)
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    settle(root)
    build(path=str(root))
    no_scan(monkeypatch)
    data = build(path=str(tmp_path / "alias"))
    assert data.train.paths[0].startswith(str(tmp_path / "alias") + os.sep)
    assert len(cache_files()) == 1


@pytest.mark.parametrize("change", ["add", "remove", "rename", "new class", "new nested"])
def test_a_changed_folder_is_scanned_again(tmp_path, change):
    root = tmp_path / "images"
    save_classes(root)
    save_png(root / "class1" / "deep" / "n.png")
    settle(root)
    before = build(path=str(root))
    names = {Path(p).relative_to(root).as_posix() for p in before.train.paths + before.val.paths}
    if change == "add":
        save_png(root / "class2" / "new.png")
        names.add("class2/new.png")
    elif change == "remove":
        (root / "class0" / "1.png").unlink()
        names.remove("class0/1.png")
    elif change == "rename":
        (root / "class0" / "1.png").rename(root / "class0" / "9.png")
        names = (names - {"class0/1.png"}) | {"class0/9.png"}
    elif change == "new class":
        save_png(root / "class3" / "0.png")
        save_png(root / "class3" / "1.png")
        names |= {"class3/0.png", "class3/1.png"}
    else:
        save_png(root / "class1" / "deep" / "n2.png")
        names.add("class1/deep/n2.png")
    after = build(path=str(root))
    assert {Path(p).relative_to(root).as_posix() for p in after.train.paths + after.val.paths} == (
        names
    )


def test_a_file_overwritten_in_place_is_not_noticed(tmp_path, monkeypatch):
    # documented: the key is the folders' times, and rewriting a file leaves its folder alone
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    build(path=str(root))
    save_png(root / "class0" / "0.png", shade=200)
    no_scan(monkeypatch)
    data = build(path=str(root))
    assert sum(int(image[0, 0, 0]) == 200 for image, _ in list(data.train) + list(data.val)) == 1


def test_a_folder_changed_just_before_the_scan_is_not_cached(tmp_path):
    root = tmp_path / "images"
    save_classes(root)  # written just now: a change in the same timestamp tick could be missed
    build(path=str(root))
    assert cache_files() == []
    settle(root)
    build(path=str(root))
    assert len(cache_files()) == 1


def test_a_damaged_index_is_ignored_and_rewritten(tmp_path, capsys):
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    first = build(path=str(root))
    (cached,) = cache_files()
    cached.write_bytes(cached.read_bytes()[:100])
    assert index.load(cached, identity(root), str(root)) is None
    assert split_of(build(path=str(root))) == split_of(first)
    assert index.load(cached, identity(root), str(root)) is not None
    assert index.load(cached, identity(tmp_path), str(root)) is None  # another folder's
    assert capsys.readouterr().err == ""


def test_an_unwritable_cache_folder_warns_and_the_run_goes_on(tmp_path, capsys):
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    data = build(path=str(root), cache_dir=str(blocker / "index"))
    assert len(data.train) + len(data.val) == 12
    (line,) = warnings_of(capsys.readouterr().err)
    assert line.startswith(f"warning: cannot save the index of {root} in {blocker / 'index'} (")
    assert line.endswith(
        "the next run lists the files again (set data.cache_dir to a writable folder)"
    )


def test_data_cache_dir_holds_the_index(tmp_path):
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    build(path=str(root), cache_dir=str(tmp_path / "idx"))
    assert [p.suffix for p in (tmp_path / "idx").iterdir()] == [".npz"]
    assert cache_files() == []


def test_an_unreadable_subfolder_keeps_the_index_from_being_cached(tmp_path, monkeypatch):
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    real = os.scandir

    def scandir(path=".", *args, **kwargs):
        if Path(os.fsdecode(path)) == root / "class2":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    build(path=str(root))
    assert cache_files() == []


def _build_in_process(root: str) -> int:
    data = build(path=root)
    return len(data.train) + len(data.val)


def test_processes_opening_at_once_all_get_the_index(tmp_path):
    # several ranks (or jobs) may scan and save at the same time: each save is atomic
    root = tmp_path / "images"
    save_classes(root, classes=4, per_class=50)
    settle(root)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        sizes = pool.map(_build_in_process, [str(root)] * 8)
    assert sizes == [200] * 8
    (cached,) = cache_files()
    assert [p.suffix for p in cached.parent.iterdir()] == [".npz"]  # no temporary file left
    assert index.load(cached, identity(root), str(root)) is not None


# --- progress --------------------------------------------------------------------------------


def test_a_short_scan_shows_nothing(tmp_path, capsys):
    save_classes(tmp_path / "images")
    build(path=str(tmp_path / "images"))
    assert capsys.readouterr().err == ""


def test_a_long_scan_off_a_terminal_prints_plain_lines(tmp_path, capsys, monkeypatch):
    root = tmp_path / "images"
    save_classes(root)
    settle(root)
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    build(path=str(root))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"scanning {root}: ")
    assert lines[0].endswith(" s)") and "so far" in lines[0]
    assert any("/3 top-level folders" in line for line in lines)
    assert lines[-1].startswith(f"scanning {root}: 12 image files in 4 folders, ")
    assert lines[-1].endswith(f"; index saved in {cache_files()[0]}")


def test_a_long_scan_on_a_terminal_shows_a_live_line(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = tmp_path / "images"
    save_classes(root)
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    build(path=str(root))
    text = terminal.getvalue()
    assert "\x1b[" in text  # rich drew (and cleared) a live line
    last = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text.rstrip().splitlines()[-1])
    assert last.startswith(f"scanning {root}: 12 image files in 4 folders, ")
    assert last.endswith(f"; not cached: {root} changed less than 2 s before the scan")


# --- the scan itself -------------------------------------------------------------------------


def test_scan_keeps_the_order_of_a_sorted_depth_first_walk(tmp_path):
    root = tmp_path / "images"
    for rel in ["b/2.png", "b/1.PNG", "a/z/1.jpg", "a/0.webp", "top.bmp", "a/.hidden.png"]:
        save_png(root / rel)
    (root / ".git").mkdir()
    save_png(root / ".git" / "x.png")
    (root / "a" / "notes.txt").write_text("no image")
    found = scan.scan_folder(str(root))
    assert [found.paths.relative(i) for i in range(len(found.paths))] == [
        "top.bmp",
        "a/0.webp",
        "a/z/1.jpg",
        "b/1.PNG",
        "b/2.png",
    ]
    assert found.group.tolist() == [-1, 0, 0, 1, 1] and found.group_names == ["a", "b"]
    assert found.dirs == ["", "a/", "a/z/", "b/"]


def test_paths_with_undecodable_bytes_survive_the_index(tmp_path, monkeypatch):
    root = tmp_path / "images"
    save_png(root / "ok.png")
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1, not UTF-8: a surrogate escape in Python
    save_png(root / name)
    settle(root)
    first = build(path=str(root))
    no_scan(monkeypatch)
    second = build(path=str(root))
    assert second.train.paths == first.train.paths
    assert os.path.join(str(root), name) in second.train.paths
    assert second.train.key(second.train.paths.index(os.path.join(str(root), name))).endswith(name)


def test_a_missing_data_path_is_still_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build(path=str(tmp_path / "none"))
