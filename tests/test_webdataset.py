"""``data=webdataset``: local tar shards read by position through a cached member index."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import sys
import tarfile
import typing
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from ssl_datasets import images, tar_index
from ssl_datasets.tar_samples import TarSamples, TarShardsDataset

from ssl_core import UserError
from ssl_core.cli import main

# the data helpers sit next to this file (tests are imported by path, not as a package)
sys.path.insert(0, str(Path(__file__).parent))
from data_files import (  # noqa: E402
    Ids,
    image,
    png,
    sample_id,
    tracking_uri,
    write_shards,
    write_tar,
)


def build(urls: str, tmp_path: Path, seed: int = 0, **options: typing.Any):
    dataset = TarShardsDataset(urls, cache_dir=str(tmp_path / "cache"), **options)
    dataset.seed = seed
    return dataset.ssl_build_dataset()


@pytest.fixture
def shards(tmp_path: Path) -> str:
    """25 labelled samples (classes 0, 1, 2) in 3 shards of 10, 10 and 5."""
    return write_shards(tmp_path / "shards", 25, 10)


# --- reading -----------------------------------------------------------------------------------


def test_brace_pattern_expands_to_every_shard_in_order(shards: str, tmp_path: Path) -> None:
    assert shards.endswith("train-{000000..000002}.tar")
    data = build(shards, tmp_path, val_fraction=0.2)
    everything = TarSamples(data.train.shards)
    assert [Path(p).name for p in everything.shards.paths] == [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
    ]
    assert [everything.key(i) for i in (0, 10, 24)] == [
        "train-000000.tar/s00000",
        "train-000001.tar/s00010",
        "train-000002.tar/s00024",
    ]
    # '::' joins patterns; a file: prefix is allowed
    one = shards.replace("{000000..000002}", "000000")
    two = "file:" + shards.replace("{000000..000002}", "{000001..000002}")
    assert len(TarSamples(build(f"{one}::{two}", tmp_path).train.shards)) == 25


def test_images_labels_and_keys_are_the_written_ones(shards: str, tmp_path: Path) -> None:
    data = build(shards, tmp_path, val_fraction=0.2)
    assert data.classes == ["0", "1", "2"] and data.labelled
    seen = []
    for split in (data.train, data.val):
        for i in range(len(split)):
            picture, label = split[i]
            sid = sample_id(picture)
            assert np.array_equal(picture, image(sid)) and picture.dtype == np.uint8
            assert label == sid % 3
            assert split.key(i).endswith(f"/s{sid:05d}")
            seen.append(sid)
    assert sorted(seen) == list(range(25))
    # stratified: every class on both sides, 20 % of each: round(9, 8 and 8 x 0.2) = 2
    assert sorted(label for _, label in data.val) == [0, 0, 1, 1, 2, 2]


def test_unlabelled_shards_have_no_val_split(tmp_path: Path) -> None:
    urls = write_shards(tmp_path / "s", 6, 4, label=None)
    data = build(urls, tmp_path)
    assert data.val is None and data.classes is None and not data.labelled
    assert [label for _, label in data.train] == [-1] * 6


def test_val_urls_are_the_held_out_set(tmp_path: Path) -> None:
    train = write_shards(tmp_path / "s", 12, 6)
    val = write_shards(tmp_path / "s", 4, 4, label=lambda i: 3, name="val")
    data = build(train, tmp_path, val_urls=val)
    assert len(data.train) == 12 and len(data.val) == 4
    assert data.classes == ["0", "1", "2", "3"]
    with pytest.raises(UserError, match="share the shard"):
        build(train, tmp_path, val_urls=train)
    unlabelled = write_shards(tmp_path / "u", 4, 4, label=None, name="u")
    with pytest.raises(UserError, match="data.val_urls have no .cls labels"):
        build(train, tmp_path, val_urls=unlabelled)


def test_items_pickle_without_file_descriptors_and_read_in_workers(shards, tmp_path) -> None:
    from torch.utils.data import DataLoader

    data = build(shards, tmp_path)
    data.train[0]  # opens a shard in this process
    assert data.train.shards._open
    copy = pickle.loads(pickle.dumps(data.train))
    assert not copy.shards._open and len(pickle.dumps(data.train)) < 10_000
    assert np.array_equal(copy[3][0], data.train[3][0])
    loader = DataLoader(data.train, num_workers=2, collate_fn=lambda batch: batch)
    assert [sample_id(p) for ((p, _),) in loader] == [sample_id(p) for p, _ in data.train]


def test_open_shards_are_capped(shards, tmp_path, monkeypatch) -> None:
    from ssl_datasets import tar_samples

    monkeypatch.setattr(tar_samples, "MAX_OPEN_SHARDS", 2)
    data = build(shards, tmp_path)
    everything = TarSamples(data.train.shards)
    ids = [sample_id(everything[i][0]) for i in (0, 10, 20, 1, 11, 21)]
    assert ids == [0, 10, 20, 1, 11, 21] and len(everything.shards._open) == 2


# --- the sampler over shards: ranks, workers, resume -------------------------------------------


def test_an_epoch_over_two_ranks_and_two_workers_covers_every_sample_once(tmp_path) -> None:
    from ssl_core.data.loader import build_train_loader

    urls = write_shards(tmp_path / "s", 45, 8, label=None)  # 6 shards of different sizes
    items = build(urls, tmp_path).train
    seen: dict[int, list[int]] = {}
    for rank in (0, 1):
        loader = build_train_loader(
            items, Ids(), batch_size=4, num_workers=2, seed=3, pin_memory=False, rank=rank,
            world_size=2,
        )  # fmt: skip
        loader.batch_sampler.set_epoch(1)
        seen[rank] = [i for batch in loader for i in batch["id"].tolist()]
        if rank == 0:
            # resumed at its 3rd optimizer step, the epoch goes on exactly where it was
            loader.batch_sampler.set_epoch(1, start_batch=2)
            assert [i for batch in loader for i in batch["id"].tolist()] == seen[0][8:]
    assert len(seen[0]) == len(seen[1]) == 20  # 5 global batches of 2 x 4
    both = seen[0] + seen[1]
    assert len(set(both)) == 40  # disjoint, no repeat
    assert set(both) <= set(range(45))  # the 5 left over are the dropped incomplete batch


# --- the index and its cache -------------------------------------------------------------------


def test_header_walk_agrees_with_tarfile_including_long_and_pax_names(tmp_path) -> None:
    path = tmp_path / "mixed.tar"
    long_dir = "d" * 120
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("a.png", b"x" * 700), (f"{long_dir}/b.png", b"yy"), ("c.cls", b"1")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tmp_path / "pax.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("é" * 60 + ".png")  # non-ASCII: a pax path record
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    for file in (path, tmp_path / "pax.tar"):
        fd = os.open(file, os.O_RDONLY)
        members, damage = tar_index.tar_members(fd, os.fstat(fd).st_size, str(file))
        os.close(fd)
        with tarfile.open(file) as tar:
            expected = [(m.name, m.offset_data, m.size) for m in tar if m.isreg()]
        assert members == expected and damage == ""


def cached(tmp_path: Path) -> dict[str, int]:
    """``{cache file name: its mtime}``."""
    return {f.name: f.stat().st_mtime_ns for f in (tmp_path / "cache").iterdir()}


def test_index_is_cached_reused_and_rebuilt_when_a_shard_changes(shards, tmp_path) -> None:
    build(shards, tmp_path)
    first = cached(tmp_path)
    assert len(first) == 3 and all(name.endswith(".npz") for name in first)

    data = build(shards, tmp_path)
    assert cached(tmp_path) == first  # all three read from the cache, none written
    assert len(data.train) + len(data.val) == 25

    # the last shard is rewritten with other samples: it alone is indexed again
    last = tmp_path / "shards" / "train-000002.tar"
    members = [(f"n{i}.{ext}", png(100 + i) if ext == "png" else b"0") for i in range(7)
               for ext in ("png", "cls")]  # fmt: skip
    write_tar(last, members)
    os.utime(last, ns=(1, 1))  # another mtime whatever the clock's resolution
    data = build(shards, tmp_path, val_fraction=0.2)
    now = cached(tmp_path)
    assert len(now) == 4 and {k: v for k, v in now.items() if k in first} == first
    assert len(data.train) + len(data.val) == 27
    assert sorted(sample_id(p) for p, _ in data.train)[-7:] == list(range(100, 107))


def test_indexing_that_takes_a_while_shows_progress(shards, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tar_index, "SHOW_AFTER_S", 0.0)
    build(shards, tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("indexing tar shards: 1/3, 10 samples so far (")
    assert err[-1].startswith("indexed 3 tar shards (25 samples) in ")
    assert err[-1].endswith(f"; cached in {tmp_path / 'cache'}")


def test_unwritable_cache_is_a_warning_and_the_index_stays_in_memory(shards, tmp_path, capsys):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    data = build(shards, tmp_path)
    (line,) = capsys.readouterr().err.splitlines()  # once, not once per shard
    assert line.startswith("warning: cannot write the shard index cache in ")
    assert len(data.train) + len(data.val) == 25


def test_damaged_cache_file_is_rebuilt(shards, tmp_path) -> None:
    build(shards, tmp_path)
    for file in (tmp_path / "cache").iterdir():
        file.write_bytes(b"garbage")
    data = build(shards, tmp_path)
    assert all(f.read_bytes() != b"garbage" for f in (tmp_path / "cache").iterdir())
    assert len(data.train) + len(data.val) == 25


def test_default_cache_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "c"))
    assert tar_index.cache_folder(None) == tmp_path / "c" / "tar-index"
    assert tar_index.cache_folder(str(tmp_path / "mine")) == tmp_path / "mine"
    monkeypatch.delenv("SSL_CORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tar_index.cache_folder(None) == tmp_path / "xdg" / "ssl_core" / "tar-index"


# --- what can be wrong with shards -------------------------------------------------------------


def test_corrupt_image_member_is_skipped_with_a_warning_or_stops_when_strict(tmp_path, capsys):
    members = [("a.png", png(1)), ("b.png", png(2)[:40]), ("c.png", png(3))]
    write_tar(tmp_path / "bad.tar", members)
    items = build(str(tmp_path / "bad.tar"), tmp_path).train
    assert [sample_id(items[i][0]) for i in range(3)] == [1, 3, 3]  # the next one stands in
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning")]
    assert line.startswith(f"warning: cannot read image {tmp_path / 'bad.tar'}:b.png (")

    strict = build(str(tmp_path / "bad.tar"), tmp_path, strict=True).train
    with pytest.raises(images.UnreadableImage, match="data.strict=false") as info:
        strict[1]
    assert str(info.value).startswith(f"cannot read image {tmp_path / 'bad.tar'}:b.png: ")


def test_truncated_shard_uses_its_first_samples_or_stops_when_strict(shards, tmp_path, capsys):
    first = tmp_path / "shards" / "train-000000.tar"
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2 + 100])  # into the 8th sample's image member
    build(shards, tmp_path)
    err = capsys.readouterr().err
    assert f"warning: {first} is damaged: " in err and "its first 7 samples are used" in err
    assert (
        f"skipped 1 sample without an image member (bmp, jpeg, jpg, png, webp), e.g. {first}:s00007"
        in err
    )
    with pytest.raises(UserError, match=r"is damaged: .*\(data.strict=true\)"):
        build(shards, tmp_path, strict=True)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("img.000.png", b"a"), ("img.001.png", b"b")], "keys must not contain dots"),
        ([("a.png", b"a"), ("a.jpg", b"b")], "has several images"),
        ([("a.png", b"a"), ("b.png", b"b"), ("a.cls", b"1")], "are not next to each other"),
        ([("a.png", b"a"), ("a.cls", b"dog")], "not a class number"),
        ([("a.png", png(0)), ("a.cls", b"1"), ("b.png", png(1))], "1 of 2 samples have no .cls"),
        ([("a.txt", b"no image")], "no samples with an image member"),
    ],
)
def test_ambiguous_or_unlabelled_samples_are_one_error(tmp_path, members, message) -> None:
    write_tar(tmp_path / "x.tar", members)
    with pytest.raises(UserError, match=message):
        build(str(tmp_path / "x.tar"), tmp_path)


def test_samples_without_image_are_skipped_with_a_warning(tmp_path, capsys) -> None:
    write_tar(tmp_path / "x.tar", [("a.png", png(0)), ("b.json", b"{}"), ("c.png", png(2))])
    data = build(str(tmp_path / "x.tar"), tmp_path)
    assert len(data.train) == 2
    assert "skipped 1 sample without an image member (bmp, jpeg, jpg" in capsys.readouterr().err


def test_missing_remote_and_compressed_shards_are_one_error(tmp_path) -> None:
    write_shards(tmp_path / "s", 4, 2)
    with pytest.raises(UserError, match=r"1 of 3 shards do not exist, e.g. .*train-000002\.tar"):
        build(str(tmp_path / "s" / "train-{000000..000002}.tar"), tmp_path)
    with pytest.raises(UserError, match="reads local tar shards only"):
        build("https://example.com/train-{0..1}.tar", tmp_path)
    (tmp_path / "z.tar.gz").write_bytes(
        gzip.compress((tmp_path / "s/train-000000.tar").read_bytes())
    )
    with pytest.raises(UserError, match="gzip-compressed tar; .* must be uncompressed"):
        build(str(tmp_path / "z.tar.gz"), tmp_path)
    with pytest.raises(UserError, match="more than once"):
        build(str(tmp_path / "s" / "train-{000000,000000}.tar"), tmp_path)


# --- through the CLI ---------------------------------------------------------------------------


def run_args(tmp_path: Path, urls: str, uri: str, *extra: str) -> list[str]:
    return [
        "method=byol",
        "backbone=test_resnet",
        "data=webdataset",
        f"data.urls={urls}",
        f"data.cache_dir={tmp_path}/cache",
        "data.val_fraction=0.25",
        "data.image_size=32",
        "augment=kornia",
        "trainer.batch_size=8",
        "trainer.epochs=2",
        "trainer.num_workers=0",
        "optim.warmup_epochs=0",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri={uri}",
        "tracking.experiment=wds",
        f"output_dir={tmp_path}/run",
        *extra,
    ]


def test_run_with_knn_monitor_then_eval_knn_through_the_cli(tmp_path, capsys) -> None:
    urls = write_shards(tmp_path / "shards", 36, 10)
    uri = tracking_uri(tmp_path)
    assert main(["run", *run_args(tmp_path, urls, uri, "eval.knn_every=1")]) == 0
    err = capsys.readouterr().err
    assert "kNN top-1 after training" in err and "epoch 2: knn/top1" in err

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("wds").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["data"] == "webdataset"
    assert run.data.params["data.urls"] == urls
    assert len(client.get_metric_history(run.info.run_id, "knn/top1")) == 2  # each epoch

    code = main(["eval", "knn", "--json", f"run={run.info.run_id}", f"tracking.uri={uri}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 0.0 <= json.loads(out)["metrics"]["knn/top1"] <= 1.0


def test_missing_webdataset_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "webdataset", None)  # `import webdataset` now fails
    assert main(["run", *run_args(tmp_path, str(tmp_path / "x.tar"), "sqlite:///x.db")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: data=webdataset needs the webdataset package: pip install 'ssl-core[webdataset]'"
    )
