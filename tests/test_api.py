"""``import ssl_core`` in a notebook: train, load_encoder, embed, evaluate; errors are raised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

import ssl_core
from ssl_core.data.transforms import eval_transform, normalize


def test_train_returns_the_run_it_made(trained_run):
    # trained_run is ssl_core.train(...) called in a worker thread, as a notebook job would be
    result = trained_run.result
    assert isinstance(result, ssl_core.TrainResult)
    run = MlflowClient(tracking_uri=trained_run.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["method.name"] == "byol"
    assert result.output_dir == trained_run.root / "run"
    assert (result.output_dir / "checkpoint.pt").is_file()
    assert set(result.metrics) >= {"knn_top1", "knn_top1_init", "final_loss"}
    assert result.metrics["knn_top1"] == pytest.approx(run.data.metrics["knn_top1"])
    assert result.config.trainer.epochs == 1


def test_load_encoder_and_embed_give_the_runs_encoder(trained_run):
    encoder = ssl_core.load_encoder(trained_run.run_id, tracking_uri=trained_run.tracking_uri)
    assert isinstance(encoder, torch.nn.Module) and not encoder.training
    saved = load_file(str(trained_run.output_dir / "encoder.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in encoder.state_dict().items())

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8) for i in range(3)]
    emb = ssl_core.embed(trained_run.run_id, images, tracking_uri=trained_run.tracking_uri)
    assert isinstance(emb, ssl_core.Embeddings) and emb.keys == ["0", "1", "2"]
    with torch.no_grad():
        x = torch.stack([eval_transform(32)(image) for image in images])
        expected = encoder(normalize(x)).numpy()
    np.testing.assert_allclose(emb.embeddings, expected, rtol=0, atol=1e-6)
    frame = emb.to_pandas()
    assert list(frame.columns) == ["key", "split", "label", "class", "embedding"]
    assert frame["label"].tolist() == [-1, -1, -1]

    # the run's own data when no images are given, with the run's split and labels
    own = ssl_core.embed(trained_run.output_dir)
    assert len(own) == 40 and set(own.splits) == {"train", "val"} and (own.labels >= 0).all()


def test_evaluate_is_ssl_eval(trained_run):
    result = ssl_core.evaluate(trained_run.run_id, "knn", tracking_uri=trained_run.tracking_uri)
    assert 0.0 <= result["metrics"]["knn/top1"] <= 1.0
    assert result["source_run_id"] == trained_run.run_id and result["nested"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"overrides": {"trainer.batch_sise": 8}}, ssl_core.ConfigError, "did you mean"),
        ({"overrides": ["trainer.batch_size=abc"]}, ssl_core.ConfigError, "expected int"),
        ({"overrides": "trainer.epochs=2"}, ssl_core.UserError, "give a mapping or a list"),
        ({"config": "nowhere.yaml"}, ssl_core.ConfigError, "does not exist"),
    ],
)
def test_errors_are_raised_not_exits(kwargs, error, message):
    with pytest.raises(error, match=message):
        ssl_core.train(method="byol", backbone="test_resnet", data="synthetic", **kwargs)


def test_options_as_a_mapping_keep_their_types():
    cfg = ssl_core.resolve_config(
        "byol",
        overrides={"data.path": "1.5", "trainer.deterministic": True, "optim.lr": 1e-6},
        config={"trainer": {"epochs": 3}},
        data="folder",
    )
    assert cfg.data.path == "1.5" and cfg.trainer.deterministic is True
    assert cfg.optim.lr == 1e-6 and cfg.trainer.epochs == 3
