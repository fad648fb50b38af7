"""``ssl embed``: one row per image, equal to the encoder's forward pass, in files written whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

import ssl_core
from ssl_core.cli import main
from ssl_core.config import to_yaml
from ssl_core.data.transforms import eval_transform, normalize
from ssl_core.evaluation.embeddings import Embeddings
from ssl_core.training.checkpoint import save_weights

sys.path.insert(0, str(Path(__file__).parent))
from folder_data import build  # noqa: E402


@pytest.fixture
def folder_run(tmp_path):
    """A folder of images in two classes (sizes vary) and a run directory whose encoder is a
    seeded test_resnet trained on it (``encoder.safetensors`` beside ``config.yaml``)."""
    from ssl_backbones.timm_backbone import create_backbone

    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(5):
            size = (12 + 3 * i, 16 + c)
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            path = images / f"class{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    cfg = ssl_core.resolve_config(
        "byol",
        "test_resnet",
        "folder",
        overrides={"data.path": str(images), "data.image_size": 16, "tracking.enabled": False},
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    torch.manual_seed(3)
    encoder = create_backbone("test_resnet")
    save_weights(run_dir / "encoder.safetensors", encoder)
    return images, run_dir, encoder.eval()


def forward_each(encoder: torch.nn.Module, items, size: int) -> np.ndarray:
    """The encoder's features of each item's evaluation view, one image at a time."""
    with torch.no_grad():
        return np.stack(
            [encoder(normalize(eval_transform(size)(image)[None]))[0].numpy() for image, _ in items]
        )


def test_rows_are_the_encoders_forward_in_the_datasets_order(folder_run, tmp_path, capsys):
    images, run_dir, encoder = folder_run
    out = tmp_path / "out" / "emb.parquet"
    assert main(["embed", f"run={run_dir}", f"out={out}", "eval.batch_size=4"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: 10 rows, embedding {encoder.num_features}")

    import pandas as pd

    table = pd.read_parquet(out)
    data = build(path=str(images))  # the same dataset, split with the same seed
    order = [*data.train.paths, *data.val.paths]
    assert table["key"].tolist() == order
    assert table["split"].tolist() == ["train"] * len(data.train) + ["val"] * len(data.val)
    labels = [*data.train.labels.tolist(), *data.val.labels.tolist()]
    assert table["label"].tolist() == labels
    assert table["class"].tolist() == [f"class{label}" for label in labels]
    expected = forward_each(encoder, [*data.train, *data.val], 16)
    rows = np.stack(table["embedding"].to_numpy())
    assert rows.dtype == np.float32 and rows.shape == expected.shape
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-6)

    # the same rows in the other formats
    for suffix in (".npy", ".safetensors"):
        other = tmp_path / f"emb{suffix}"
        assert main(["embed", f"run={run_dir}", f"out={other}"]) == 0
        if suffix == ".npy":
            array = np.load(other)
            keys, got = array["key"].tolist(), array["embedding"]
            assert array["split"].tolist() == table["split"].tolist()
        else:
            from safetensors import safe_open

            with safe_open(str(other), "np") as handle:
                got = handle.get_tensor("embedding")
                keys = json.loads(handle.metadata()["keys"])
        assert keys == order
        np.testing.assert_array_equal(got, rows)


def test_a_failed_write_leaves_no_file(folder_run, tmp_path, monkeypatch):
    _, run_dir, _ = folder_run
    out = tmp_path / "emb.parquet"

    def half_then_fail(self, tmp):
        tmp.write_bytes(b"PAR1 half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(Embeddings, "_parquet", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        ssl_core.embed(run_dir, out=out)
    assert list(tmp_path.glob("*emb.parquet*")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["out=emb.csv"], "out=emb.csv: cannot tell the format from '.csv'; valid: .parquet"),
        (["head=nothing"], "head=nothing: method 'byol' has no such head; valid: projector"),
    ],
)
def test_bad_output_or_head_is_one_line(trained_run, capsys, args, message):
    code = main(["embed", f"run={trained_run.output_dir}", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_run_ids_embeddings_are_logged_in_a_child_run(trained_run, tmp_path, capsys):
    out = tmp_path / "emb.parquet"
    args = ["embed", f"run={trained_run.run_id}", trained_run.uri, f"out={out}", "head=projector"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "embedding 96 and projector 16" in said and "child of run" in said

    client = MlflowClient(tracking_uri=trained_run.tracking_uri)
    (child,) = client.search_runs(
        [client.get_run(trained_run.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{trained_run.run_id}' and params.out = '{out}'",
    )
    assert child.data.tags["ssl.eval"] == "embed" and child.info.status == "FINISHED"
    assert child.data.metrics["embed/rows"] == 40
    logged = client.download_artifacts(child.info.run_id, "embeddings/emb.parquet", str(tmp_path))
    assert Path(logged).read_bytes() == out.read_bytes()

    import pandas as pd

    table = pd.read_parquet(out)
    model = torch.load(trained_run.output_dir / "checkpoint.pt", weights_only=True)["model"]
    projector = ssl_core.mlp(96, 32, 16)  # BYOL's projector at these widths
    projector.load_state_dict(
        {k.removeprefix("projector."): v for k, v in model.items() if k.startswith("projector.")}
    )
    with torch.no_grad():
        expected = projector.eval()(torch.from_numpy(np.stack(table["embedding"].to_numpy())))
    np.testing.assert_allclose(np.stack(table["projector"].to_numpy()), expected, atol=1e-6)
