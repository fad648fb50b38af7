"""Warm start: ``backbone.pretrained=true`` from a (fake) Hugging Face cache, and
``backbone.weights=PATH|RUN_ID``; the encoder at step 0 holds exactly those weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import ssl_core
from ssl_core import hookimpl
from ssl_core.cli import main
from ssl_core.evaluation.knn import knn_eval_sharded
from ssl_core.plugins import get_plugins
from ssl_core.training.warm_start import load_strict

sys.path.insert(0, str(Path(__file__).parent))
from hub_cache import build_fake_hf_cache  # noqa: E402

HUB_NAME = "test_resnet.r160_in1k"  # a tiny timm model with weights on the Hub


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "method=byol",
        "augment=albumentations",
        "trainer.batch_size=8",
        "trainer.max_steps=1",
        "trainer.num_workers=0",
        "optim.warmup_epochs=0",
        "eval.knn_every=0",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.enabled=false",  # what is checked here needs no MLflow run
        f"output_dir={tmp_path}/run",
        *extra,
    ]


class AtStepZero:
    """Copies the online and target encoders when training is about to begin."""

    def __init__(self) -> None:
        self.encoder: dict[str, torch.Tensor] = {}
        self.target: dict[str, torch.Tensor] = {}

    @hookimpl
    def ssl_run_start(self, run):
        self.encoder = {k: v.detach().clone() for k, v in run.encoder.state_dict().items()}
        target = run.model.target_encoder.state_dict()
        self.target = {k: v.detach().clone() for k, v in target.items()}


def seeded_timm_file(seed: int) -> dict[str, torch.Tensor]:
    """A test_resnet state_dict as timm publishes it: with its 1000-class classifier ``fc``."""
    torch.manual_seed(seed)
    model = timm.create_model("test_resnet", num_classes=1000)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, offline Hugging Face cache (set after huggingface_hub was imported)."""
    import huggingface_hub.constants as hf

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    return cache


def digits_folder(root: Path, count: int = 200) -> Path:
    """The first ``count`` digits as 16 px PNGs in class folders: small, and a kNN on them
    tells one random encoder from another."""
    from PIL import Image
    from ssl_datasets.digits import load_digits

    images, labels = load_digits(16)
    for i in range(count):
        path = root / f"digit{labels[i]}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).convert("RGB").save(path)
    return root


def assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    differing = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert differing == []


def test_pretrained_from_the_cache_is_the_encoder_at_step_zero_and_its_knn(tmp_path, hf_cache):
    published = seeded_timm_file(seed=1)
    path = tmp_path / "model.safetensors"
    save_file(published, str(path))
    build_fake_hf_cache(hf_cache, f"timm/{HUB_NAME}", {"model.safetensors": path.read_bytes()})

    seen = AtStepZero()
    plugins = get_plugins(extra=[("at-step-zero", seen)])
    folder = digits_folder(tmp_path / "digits")
    args = run_args(
        tmp_path, f"data.path={folder}", "data.image_size=16", "backbone.pretrained=true"
    )
    result = ssl_core.train(backbone=HUB_NAME, data="folder", overrides=args, plugins=plugins)

    encoder_keys = {k: v for k, v in published.items() if not k.startswith("fc.")}
    assert_same(seen.encoder, encoder_keys)
    assert_same(seen.target, encoder_keys)  # BYOL's target was copied from those weights

    # knn_top1_init is the kNN of exactly these weights, and it tells weights apart
    cfg = result.config
    with plugins.running(cfg, [plugins.registry.get("dataset", "folder")]):
        data = plugins.hook.ssl_build_dataset()
    knn = dict(image_size=16, device="cpu", k=cfg.eval.knn_k, temperature=0.07)
    expected = timm.create_model("test_resnet", num_classes=0)
    expected.load_state_dict(encoder_keys)
    assert result.metrics["knn_top1_init"] == knn_eval_sharded(expected, data, **knn)
    other = timm.create_model("test_resnet", num_classes=0)
    other.load_state_dict({k: v for k, v in seeded_timm_file(0).items() if k in encoder_keys})
    assert knn_eval_sharded(other, data, **knn) != result.metrics["knn_top1_init"]


def test_offline_with_nothing_cached_is_one_line_before_any_work(tmp_path, hf_cache, capsys):
    args = run_args(tmp_path, "data=synthetic", f"backbone={HUB_NAME}", "backbone.pretrained=true")
    assert main(["run", *args, "tracking.enabled=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"error: backbone.pretrained=true: timm weights for {HUB_NAME} are not")
    assert f"timm/{HUB_NAME}" in err and "model.safetensors" in err and str(hf_cache) in err
    assert f"hf download timm/{HUB_NAME} model.safetensors" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["backbone.small_input=true"], "does not go with backbone.small_input=true"),
        (["backbone.weights=x.safetensors"], "both set the encoder's starting weights"),
    ],
)
def test_pretrained_refuses_what_would_throw_its_weights_away(tmp_path, capsys, extra, message):
    args = run_args(tmp_path, "data=synthetic", "backbone=resnet18", "backbone.pretrained=true")
    assert main(["run", *args, *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_tag_without_pretrained_warns_that_it_starts_random(capsys):
    from ssl_backbones.pretrained import check

    check(HUB_NAME, pretrained=False, small_input=False, weights=None)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: backbone={HUB_NAME} names timm's pretrained weights")
    assert "starts from random weights" in err
    check("test_resnet", pretrained=False, small_input=False, weights=None)
    assert capsys.readouterr().err == ""
    with pytest.raises(ssl_core.UserError, match="timm's tags for test_resnet: test_resnet.r160"):
        check("test_resnet.bogus", pretrained=False, small_input=False, weights=None)


def test_weights_file_with_a_classifier_is_the_encoder_at_step_zero(tmp_path, capsys):
    # timm's own model.safetensors carries the classifier the encoder replaced by an Identity
    published = seeded_timm_file(seed=2)
    path = tmp_path / "timm-file.safetensors"
    save_file(published, str(path))
    seen = AtStepZero()
    plugins = get_plugins(extra=[("at-step-zero", seen)])
    args = run_args(tmp_path, "eval.knn=false", f"backbone.weights={path}")
    ssl_core.train(backbone="test_resnet", data="synthetic", overrides=args, plugins=plugins)
    encoder_keys = {k: v for k, v in published.items() if not k.startswith("fc.")}
    assert_same(seen.encoder, encoder_keys)
    assert_same(seen.target, encoder_keys)
    assert "left out 2 of a head it has not (fc.bias, fc.weight)" in capsys.readouterr().err


def test_weights_of_a_run_id_are_that_runs_encoder(tmp_path, trained_run):
    seen = AtStepZero()
    plugins = get_plugins(extra=[("at-step-zero", seen)])
    args = run_args(
        tmp_path, "eval.knn=false", f"backbone.weights={trained_run.run_id}", "data=synthetic"
    )
    args = [a for a in args if not a.startswith("tracking.uri")] + [trained_run.uri]
    ssl_core.train(backbone="test_resnet", overrides=args, plugins=plugins)
    assert_same(seen.encoder, load_file(str(trained_run.output_dir / "encoder.safetensors")))


def test_weights_of_another_architecture_name_what_differs(tmp_path, capsys):
    small = timm.create_model("test_resnet", num_classes=0)
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(path))
    args = run_args(tmp_path, "data=synthetic", "backbone=resnet18", f"backbone.weights={path}")
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert f"error: backbone.weights={path} does not fit backbone 'resnet18'" in err
    assert " missing: conv1.weight" in err and " unexpected: conv1.0.weight" in err
    assert "of another shape (file!=encoder): bn1.bias (32,)!=(64,)" in err
    assert not (tmp_path / "run").exists()
    assert main(["run", *args[:-1], "backbone.weights=nowhere/x.safetensors"]) == 2
    assert "backbone.weights=nowhere/x.safetensors: no such file" in capsys.readouterr().err


def test_strict_load_counts_and_shows_five_of_each():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    del tensors["1.num_batches_tracked"]  # BatchNorm fills it: not missing
    assert load_strict(model, tensors, "w", "toy") == []
    tensors.update({f"extra{i}.weight": torch.zeros(1) for i in range(7)})
    with pytest.raises(ssl_core.UserError, match=r"7 unexpected: extra0.weight, .* \(\+2 more\)"):
        load_strict(model, tensors, "w", "toy")
