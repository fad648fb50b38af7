"""``data=hf``: a Hugging Face ``datasets`` dataset on disk, memory-mapped, decoded per item."""

from __future__ import annotations

import os
import pickle
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from ssl_datasets import images

from ssl_core import UserError
from ssl_core.cli import main

# the data helpers sit next to this file (tests are imported by path, not as a package)
sys.path.insert(0, str(Path(__file__).parent))
from data_files import image, png, sample_id, tracking_uri, write_hf  # noqa: E402

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
import datasets  # noqa: E402  (the hf extra is part of dev; CI installs it)


def build(path: Path | str, seed: int = 0, **options: typing.Any):
    from ssl_datasets.hf_images import HFDataset

    dataset = HFDataset(str(path), **options)
    dataset.seed = seed
    return dataset.ssl_build_dataset()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A DatasetDict: train (ids 0-29) and test (ids 30-38), ClassLabel cat/dog/owl = id % 3."""
    return write_hf(tmp_path_factory.mktemp("hf") / "dd", {"train": 30, "test": 9})


def ids(items) -> list[int]:
    return [sample_id(items[i][0]) for i in range(len(items))]


def test_saved_dataset_dict_reads_the_train_split_with_a_stratified_val(saved) -> None:
    data = build(saved, val_fraction=0.2)
    assert data.classes == ["cat", "dog", "owl"] and data.labelled
    assert sorted(ids(data.train) + ids(data.val)) == list(range(30))
    assert sorted(label for _, label in data.val) == [0, 0, 1, 1, 2, 2]
    for items in (data.train, data.val):
        for i in range(len(items)):
            picture, label = items[i]
            assert np.array_equal(picture, image(sample_id(picture)))
            assert label == sample_id(picture) % 3
            assert items.key(i) == str(sample_id(picture))  # the row index in the split


def test_split_and_val_split_choose_splits(saved) -> None:
    data = build(saved, split="test")
    assert sorted(ids(data.train) + ids(data.val)) == list(range(30, 39))
    data = build(saved, val_split="test")
    assert ids(data.train) == list(range(30)) and ids(data.val) == list(range(30, 39))
    with pytest.raises(UserError, match="data.split=valid is not a split .*; valid: test, train"):
        build(saved, split="valid")
    with pytest.raises(UserError, match="is the training split"):
        build(saved, val_split="train")


def test_arrow_files_and_a_single_saved_dataset_are_read_in_place(saved) -> None:
    (arrow,) = (saved / "test").glob("*.arrow")
    for path in (arrow, saved / "test", str(saved / "test" / "*.arrow")):
        data = build(path)
        assert sorted(ids(data.train) + ids(data.val)) == list(range(30, 39))
        assert data.classes == ["cat", "dog", "owl"]
    with pytest.raises(UserError, match="holds one dataset, not a DatasetDict"):
        build(saved / "test", split="train")


def test_parquet_is_converted_once_into_the_cache_dir(saved, tmp_path) -> None:
    dataset = datasets.load_from_disk(str(saved))["train"]
    dataset.to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    data = build(tmp_path / "pq", cache_dir=str(tmp_path / "cache"))
    assert data.classes == ["cat", "dog", "owl"]  # ClassLabel survives parquet
    assert sorted(ids(data.train) + ids(data.val)) == list(range(30))
    assert any(p.suffix == ".arrow" for p in (tmp_path / "cache").rglob("*"))


def test_items_stay_memory_mapped_and_pickle_small_into_workers(saved) -> None:
    from torch.utils.data import DataLoader

    data = build(saved)
    blob = pickle.dumps(data.train)
    assert len(blob) < 20_000  # file paths, not the images
    assert ids(pickle.loads(blob)) == ids(data.train)
    loader = DataLoader(data.train, num_workers=2, collate_fn=lambda batch: batch)
    assert [sample_id(p) for ((p, _),) in loader] == ids(data.train)


@pytest.mark.parametrize(
    ("labels", "classes", "first"),
    [
        ([2, 0, 1, 0], ["0", "1", "2"], 2),  # integers
        (["b", "a", "c", "a"], ["a", "b", "c"], 1),  # strings: sorted
        (None, None, -1),  # no label column
    ],
)
def test_label_columns_of_each_kind(tmp_path, labels, classes, first) -> None:
    columns: dict[str, list] = {"img": [{"bytes": png(i), "path": None} for i in range(4)]}
    features = {"img": datasets.Image()}
    if labels is not None:
        columns["label"] = labels
        kind = "int64" if isinstance(labels[0], int) else "string"
        features["label"] = datasets.Value(kind)
    part = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    part.save_to_disk(str(tmp_path / "d"))
    data = build(tmp_path / "d", image_column="img", val_fraction=0.25)
    assert data.classes == classes
    everything = list(data.train) + list(data.val or [])
    assert {sample_id(p): label for p, label in everything}[0] == first


def test_label_column_null_is_unlabelled_and_a_missing_one_is_a_note(saved, capsys) -> None:
    assert build(saved, label_column=None).val is None
    assert capsys.readouterr().err == ""
    assert build(saved, label_column="species").val is None
    assert "has no column 'species' (columns: image, label)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_column": "picture"}, "data.image_column=picture is not a column .*: image, label"),
        ({"image_column": "label"}, "holds ClassLabel"),
        ({"path": "/nonexistent/x"}, "data.path=/nonexistent/x does not exist"),
    ],
)
def test_wrong_columns_and_paths_are_one_error(saved, options, message) -> None:
    options = {"path": saved, **options}
    with pytest.raises(UserError, match=message):
        build(options.pop("path"), **options)


def test_folder_without_a_dataset_is_one_error(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(UserError, match="holds no .arrow or .parquet file"):
        build(tmp_path)


def test_undecodable_image_is_skipped_with_a_warning_or_stops_when_strict(tmp_path, capsys):
    values = [{"bytes": png(0), "path": None}, {"bytes": b"not a png", "path": None}]
    values.append({"bytes": png(2), "path": None})
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": values}, features=features).save_to_disk(
        str(tmp_path / "d")
    )
    data = build(tmp_path / "d")
    assert ids(data.train) == [0, 2, 2]
    assert "warning: cannot read image row 1 of " in capsys.readouterr().err
    with pytest.raises(images.UnreadableImage, match="cannot read image row 1 of "):
        build(tmp_path / "d", strict=True).train[1]


# --- through the CLI ---------------------------------------------------------------------------


def hf_args(tmp_path: Path, path: Path, *extra: str) -> list[str]:
    return [
        "method=byol",
        "backbone=test_resnet",
        "data=hf",
        f"data.path={path}",
        "data.val_split=test",
        "data.image_size=32",
        "augment=kornia",
        "trainer.batch_size=8",
        "trainer.epochs=1",
        "trainer.num_workers=1",
        "optim.warmup_epochs=0",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"output_dir={tmp_path}/run",
        *extra,
    ]


def test_run_through_the_cli(saved, tmp_path, capsys) -> None:
    uri = tracking_uri(tmp_path)
    assert main(["run", *hf_args(tmp_path, saved), f"tracking.uri={uri}"]) == 0
    err = capsys.readouterr().err
    assert "kNN top-1 after training" in err and "training 3 steps" in err  # 30 // 8
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ssl_core").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["data"] == "hf"
    assert "knn_top1" in run.data.metrics


def test_missing_datasets_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    assert main(["run", *hf_args(tmp_path, tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: data=hf needs the datasets package: pip install 'ssl-core[hf]'"
    )
