"""``data=folder data.file_list=LIST``: the images a CSV names, with or without labels."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ssl_datasets import folder, split

from ssl_core import UserError, cli

sys.path.insert(0, str(Path(__file__).parent))
from folder_data import build, cache_files, save_png, settle, warnings_of  # noqa: E402


def write_list(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def relative(data, base: Path) -> list[str]:
    return [os.path.relpath(p, base) for p in data.train.paths]


def test_an_unlabelled_list_keeps_its_order_relative_to_its_folder(tmp_path, capsys):
    for name in ["b.png", "a.png", "sub/c.jpg"]:
        save_png(tmp_path / "data" / name)
    listed = write_list(tmp_path / "data" / "train.csv", "path", "b.png", "", "sub/c.jpg", "a.png")
    data = build(file_list=str(listed))
    assert relative(data, tmp_path / "data") == ["b.png", "sub/c.jpg", "a.png"]
    assert data.val is None and data.classes is None
    assert {label for _, label in data.train} == {-1}
    assert data.train.key(0) == str(tmp_path / "data" / "b.png")
    assert capsys.readouterr().err == ""


def test_paths_are_relative_to_data_path_when_it_is_given(tmp_path):
    save_png(tmp_path / "images" / "x" / "1.png")
    save_png(tmp_path / "elsewhere.png")
    listed = write_list(tmp_path / "lists" / "all.csv", "x/1.png", str(tmp_path / "elsewhere.png"))
    data = build(path=str(tmp_path / "images"), file_list=str(listed))
    assert data.train.paths == [
        str(tmp_path / "images" / "x" / "1.png"),
        str(tmp_path / "elsewhere.png"),  # an absolute path is taken as it is
    ]


def test_class_names_label_it_with_the_folders_stratified_split(tmp_path):
    lines = ["path,label"]
    for i in range(12):
        kind = ["dog", "cat", "bird"][i % 3]
        save_png(tmp_path / f"{i}.png", shade=i)
        lines.append(f"{i}.png, {kind}")  # a space after the comma is fine
    listed = write_list(tmp_path / "train.csv", *lines)
    data = build(file_list=str(listed), val_fraction=0.25, seed=7)
    assert data.classes == ["bird", "cat", "dog"]
    labels = np.array([[2, 1, 0][i % 3] for i in range(12)])
    train_idx, val_idx = split.stratified_split(labels, 0.25, seed=7)
    assert data.val.paths == [str(tmp_path / f"{i}.png") for i in val_idx]
    assert data.train.paths == [str(tmp_path / f"{i}.png") for i in train_idx]
    assert data.val.labels.tolist() == labels[val_idx].tolist()
    assert data.labelled


def test_integer_labels_sort_by_value_and_keep_their_values(tmp_path):
    lines = []
    for i in range(12):
        save_png(tmp_path / f"{i}.png")
        lines.append(f"{i}.png,{[0, 2, 10, 1][i % 4]}")
    data = build(file_list=str(write_list(tmp_path / "l.csv", *lines)), val_fraction=0.5)
    assert data.classes == ["0", "1", "2", "10"]
    everything = list(data.train) + list(data.val)
    items = dict(zip(data.train.paths + data.val.paths, everything, strict=True))
    assert items[str(tmp_path / "2.png")][1] == 3  # "10" is the fourth class
    assert items[str(tmp_path / "3.png")][1] == 1


def test_a_single_label_is_unlabelled_as_a_single_subfolder_is(tmp_path):
    for i in range(3):
        save_png(tmp_path / f"{i}.png")
    listed = write_list(tmp_path / "l.csv", "0.png,a", "1.png,a", "2.png,a")
    data = build(file_list=str(listed))
    assert data.classes is None and len(data.train) == 3


def test_missing_files_are_skipped_with_a_count_or_fatal_with_strict(tmp_path, capsys):
    save_png(tmp_path / "a.png")
    save_png(tmp_path / "b.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    listed = write_list(
        tmp_path / "l.csv", "a.png", "gone.png", "pipe.png", "nofolder/x.png", "dir.png", "b.png"
    )
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(data=build(file_list=str(listed))))
    thread.daemon = True
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the pipe was opened"
    assert relative(result["data"], tmp_path) == ["a.png", "b.png"]
    (line,) = warnings_of(capsys.readouterr().err)
    assert line == (
        f"warning: skipped 4 lines of data.file_list={listed} naming no regular file under "
        f"{tmp_path}: line 2: gone.png (no such file), line 3: pipe.png (a pipe), "
        "line 4: nofolder/x.png (no such folder), line 5: dir.png (a folder)"
    )
    with pytest.raises(UserError) as info:
        build(file_list=str(listed), strict=True)
    assert str(info.value) == (
        f"data.file_list={listed}: 4 lines naming no regular file under {tmp_path} "
        "(data.strict=true): line 2: gone.png (no such file), line 3: pipe.png (a pipe), "
        "line 4: nofolder/x.png (no such folder), line 5: dir.png (a folder); fix the list, "
        "or set data.strict=false to skip such lines"
    )


def test_the_warning_names_five_lines_and_counts_the_rest(tmp_path, capsys):
    save_png(tmp_path / "a.png")
    listed = write_list(tmp_path / "l.csv", "a.png", *[f"m{i}.png" for i in range(8)])
    build(file_list=str(listed))
    (line,) = warnings_of(capsys.readouterr().err)
    assert line.startswith("warning: skipped 8 lines of data.file_list=")
    assert line.endswith("line 6: m4.png (no such file) and 3 more")


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (["a.png", "b.png,x,y"], "line 2: 3 fields; expected `path` or `path,label`"),
        (["a.png,cat", ",dog"], "line 2: no path; expected `path` or `path,label`"),
        (["a.png,cat", "b.png,"], "line 2: an empty label; expected `path` or `path,label`"),
        (["a.png,cat", "", "b.png"], "line 3: no label, but line 1 has one; give every line"),
        (["path,label", "a.png", "b.png,dog"], "line 3: a label, but line 2 has none; give"),
        (['"a.png'], "line 1: unexpected end of data; expected"),
    ],
)
def test_a_malformed_line_is_one_error_naming_it(tmp_path, lines, problem):
    save_png(tmp_path / "a.png")
    listed = write_list(tmp_path / "l.csv", *lines)
    with pytest.raises(UserError) as info:
        build(file_list=str(listed))
    message = str(info.value)
    assert message.startswith(f"data.file_list={listed} {problem}"), message
    assert "\n" not in message


def test_a_list_that_is_not_utf8_is_one_error(tmp_path):
    listed = tmp_path / "l.csv"
    listed.write_bytes(b"caf\xe9.png\n")
    with pytest.raises(UserError, match=r"is not UTF-8 text \(.*\); save it as UTF-8$"):
        build(file_list=str(listed))


def test_a_missing_list_or_a_folder_is_one_error(tmp_path):
    with pytest.raises(UserError) as info:
        build(file_list=str(tmp_path / "none.csv"))
    assert str(info.value) == (
        f"data.file_list={tmp_path / 'none.csv'} does not exist; give a CSV file naming one "
        "image per line (path, or path,label)"
    )
    with pytest.raises(UserError, match="is a folder; give a CSV file"):
        build(file_list=str(tmp_path))


def test_a_list_naming_no_existing_file_is_one_error(tmp_path):
    listed = write_list(tmp_path / "l.csv", "a.png", "b.png")
    with pytest.raises(UserError) as info:
        build(file_list=str(listed))
    assert str(info.value) == (
        f"data.file_list={listed} names no file that exists under {tmp_path}: "
        "line 1: a.png (no such file), line 2: b.png (no such file)"
    )
    with pytest.raises(UserError, match="names no file that exists"):
        build(file_list=str(write_list(tmp_path / "empty.csv", "path,label", "")))


def test_a_second_open_reads_the_cached_index_and_an_edit_is_noticed(tmp_path, monkeypatch, capsys):
    for i in range(4):
        save_png(tmp_path / "d" / f"{i}.png")
    listed = write_list(tmp_path / "d" / "l.csv", "0.png,a", "1.png,b", "2.png,a", "3.png,b")
    settle(tmp_path / "d")
    old = time.time() - 60
    os.utime(listed, (old, old))
    first = build(file_list=str(listed))
    assert len(cache_files()) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the list was read again")

    with monkeypatch.context() as patch:
        patch.setattr(folder, "read_file_list", fail)
        again = build(file_list=str(listed))
    assert again.train.paths == first.train.paths and again.classes == ["a", "b"]
    write_list(listed, "0.png,a", "1.png,b", "2.png,a")  # the list edited: read again
    again = build(file_list=str(listed))
    assert len(again.train) + len(again.val) == 3
    settle(tmp_path / "d")
    os.utime(listed, (old, old))
    build(file_list=str(listed))
    (tmp_path / "d" / "2.png").unlink()  # a listed file removed: its folder changed
    capsys.readouterr()
    again = build(file_list=str(listed))
    assert len(again.train) + len(again.val) == 2
    assert "line 3: 2.png (no such file)" in capsys.readouterr().err


def test_ssl_run_trains_on_a_file_list(tmp_path, capsys):
    for i in range(8):
        save_png(tmp_path / "imgs" / f"{i}.png", shade=20 * i)
    listed = write_list(tmp_path / "imgs" / "train.csv", *[f"{i}.png" for i in range(8)])
    args = [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=folder",
        f"data.file_list={listed}",
        "data.image_size=16",
        "augment=kornia",
        "trainer.batch_size=4",
        "trainer.max_steps=2",
        "trainer.num_workers=0",
        "eval.knn=false",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        "tracking.enabled=false",
        f"output_dir={tmp_path}/run",
    ]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").exists()
