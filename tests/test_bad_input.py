"""Bad input through the whole ``ssl run``: one line, exit 2, nothing left behind.

Image folders that are empty, unreadable, corrupt or of mixed modes and sizes; a view size
the backbone cannot take; and docs/reliability.md citing only tests that exist.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ssl_core import UserError, cli
from ssl_core.training.input_size import check_input_size

ROOT = Path(__file__).resolve().parents[1]


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    """A two-step run on the folder ``tmp_path/images``: tiny heads, 16 px views, no kNN."""
    return [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=folder",
        f"data.path={tmp_path / 'images'}",
        "data.image_size=16",
        "augment=kornia",
        "trainer.batch_size=4",
        "trainer.max_steps=2",
        "trainer.num_workers=0",
        "eval.knn=false",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"output_dir={tmp_path}/run",
        *extra,
    ]


def one_error(err: str) -> str:
    """The single ``error:`` line of a failed command's stderr (and no traceback)."""
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def nothing_left(tmp_path: Path) -> None:
    """No run directory, no checkpoint and no MLflow store: the run never started."""
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "mlflow.db").exists()


def save_mixed(root: Path, count: int = 16) -> list[str]:
    """``count`` images cycling through RGB, L, P, RGBA and I;16, each of another size."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    modes = []
    for i in range(count):
        height, width = (int(v) for v in rng.integers(10, 48, size=2))
        kind = i % 5
        if kind == 0:
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        elif kind in (1, 2):
            gray = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
            image = gray if kind == 1 else gray.convert("P")
        elif kind == 3:
            rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
            image = Image.fromarray(rgba, "RGBA")
        else:
            image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        modes.append(image.mode)
        image.save(root / f"{i:02d}.png")
    return modes


def truncated(fmt: str) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


# --- image folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("augment", ["albumentations", "kornia"])
def test_mixed_modes_and_sizes_train_end_to_end(tmp_path, capsys, augment):
    modes = save_mixed(tmp_path / "images")
    assert set(modes) == {"RGB", "L", "P", "RGBA", "I;16"}
    code = cli.main(run_args(tmp_path, f"augment={augment}", "tracking.enabled=false"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "warning" not in err
    assert (tmp_path / "run" / "checkpoint.pt").exists() and "done:" in out


def test_empty_data_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert cli.main(run_args(tmp_path)) == 2
    line = one_error(capsys.readouterr().err)
    assert f"no images found under data.path={tmp_path / 'images'}" in line
    assert ".jpg" in line
    nothing_left(tmp_path)


def test_unreadable_data_directory_is_one_line(tmp_path, monkeypatch, capsys):
    save_mixed(tmp_path / "images", count=4)
    real = os.scandir
    denied = tmp_path / "images"

    def scandir(path=".", *args, **kwargs):
        # the tests run as root, who may read any folder: deny it as chmod 000 would
        if Path(os.fsdecode(path)) == denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    assert cli.main(run_args(tmp_path)) == 2
    line = one_error(capsys.readouterr().err)
    assert (
        line == f"error: cannot read the folder {denied}: Permission denied; check its permissions"
    )
    nothing_left(tmp_path)


CORRUPT = ("cut.png", "cut.webp", "notes.jpg")


def save_with_corrupt(root: Path) -> None:
    """16 files: 13 images of mixed modes, and 3 named like images that do not decode."""
    save_mixed(root, count=13)
    (root / "notes.jpg").write_bytes(b"a text file named like an image")
    (root / "cut.png").write_bytes(truncated("PNG"))
    (root / "cut.webp").write_bytes(truncated("WEBP"))


def test_corrupt_images_are_skipped_when_loaded_with_a_warning_each(tmp_path, capsys):
    # The scan opens no file: each corrupt one is met when its batch is loaded. Four steps
    # of 4 load all 16 files once.
    save_with_corrupt(tmp_path / "images")
    args = run_args(tmp_path, "trainer.max_steps=4", "tracking.enabled=false")
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3
    named = []
    for count, line in enumerate(warnings, start=1):
        prefix = f"warning: cannot read image {tmp_path / 'images'}/"
        assert line.startswith(prefix)
        named.append(line[len(prefix) :].split(" ", 1)[0])
        so_far = "1 unreadable image" if count == 1 else f"{count} unreadable images"
        assert line.endswith(f"is used in its place ({so_far} so far in this process)")
    assert sorted(named) == list(CORRUPT)


def test_corrupt_images_with_strict_stop_the_run_when_loaded(tmp_path, capsys):
    save_with_corrupt(tmp_path / "images")
    args = run_args(tmp_path, "trainer.max_steps=4", "data.strict=true")
    assert cli.main(args) == 1  # met in training, after the MLflow run began: not exit 2
    line = one_error(capsys.readouterr().err)
    prefix = f"error: cannot read image {tmp_path / 'images'}/"
    assert line.startswith(prefix) and line[len(prefix) :].split(":", 1)[0] in CORRUPT
    assert line.endswith("fix or remove it, or set data.strict=false to skip unreadable images")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (status,) = mlflow.search_runs(search_all_experiments=True)["status"]
    assert status == "FAILED"


def test_image_that_fails_only_when_decoded_is_replaced_or_fatal_with_strict(tmp_path, capfd):
    save_mixed(tmp_path / "images", count=7)
    late = tmp_path / "images" / "late.jpg"
    late.write_bytes(truncated("JPEG"))  # its header is fine: only decoding it fails
    # 8 images in batches of 4: the first epoch's two steps load every one of them, in a
    # DataLoader worker, so the warning and the error cross a process boundary
    args = run_args(tmp_path, "trainer.num_workers=1", "tracking.enabled=false")
    assert cli.main(args) == 0
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: cannot read image {late} (image file is truncated")

    assert cli.main([*args, "data.strict=true", f"output_dir={tmp_path}/strict"]) == 1
    line = one_error(capfd.readouterr().err)
    assert line.startswith(f"error: cannot read image {late}: image file is truncated")
    assert line.endswith("or set data.strict=false to skip unreadable images")


# --- checkpoints -----------------------------------------------------------------------------


class RunsCodeWhenUnpickled:
    """An object whose unpickling creates ``marker``: what a hostile checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "ssl_core.checkpoint/1", "model": RunsCodeWhenUnpickled(marker)}, evil)
    args = run_args(tmp_path, "data=synthetic", "data.num_samples=16", f"resume={evil}")
    assert cli.main([a for a in args if not a.startswith("data.path=")]) == 2
    line = one_error(capsys.readouterr().err)
    assert f"checkpoint '{evil}' is truncated, corrupt or unsafe" in line
    assert not marker.exists()
    nothing_left(tmp_path)


def test_resume_path_that_does_not_exist_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nothere.pt"
    args = run_args(tmp_path, "data=synthetic", "data.num_samples=16", f"resume={missing}")
    assert cli.main([a for a in args if not a.startswith("data.path=")]) == 2
    line = one_error(capsys.readouterr().err)
    assert line == (
        f"error: resume.path '{missing}' does not exist; give a checkpoint file, "
        "a run directory, or resume=auto"
    )
    nothing_left(tmp_path)


# --- a view size the backbone cannot take ----------------------------------------------------


def test_probe_names_the_size_the_backbone_and_a_size_that_works():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    with pytest.raises(UserError) as info:
        check_input_size(vit, 32, "cpu", "vit_tiny_patch16_224")
    assert str(info.value) == (
        "data.image_size=32 does not fit backbone 'vit_tiny_patch16_224' (Input height (32) "
        "doesn't match model (224)); data.image_size=224 works"
    )
    convnext = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    with pytest.raises(
        UserError, match=r"data.image_size=16 does not fit backbone 'convnext_atto'"
    ):
        check_input_size(convnext, 16, "cpu", "convnext_atto")


def test_probe_accepts_a_small_resnet_and_changes_nothing():
    resnet = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    resnet.train()
    resnet.fc.eval()  # a submodule a method keeps in eval mode stays so
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    rng = torch.get_rng_state()
    check_input_size(resnet, 16, "cpu", "test_resnet")
    assert torch.equal(rng, torch.get_rng_state())
    assert resnet.training and not resnet.fc.training
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())


def test_image_size_too_small_for_the_backbone_is_one_line(tmp_path, capsys):
    args = [
        "run",
        "method=byol",
        "backbone=vit_tiny_patch16_224",
        "data=synthetic",
        "data.num_samples=16",
        "data.image_size=32",
        "trainer.batch_size=4",
        "trainer.max_steps=1",
        "trainer.num_workers=0",
        "eval.knn=false",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"output_dir={tmp_path}/run",
    ]
    assert cli.main(args) == 2
    line = one_error(capsys.readouterr().err)
    assert "data.image_size=32" in line and "vit_tiny_patch16_224" in line
    assert not (tmp_path / "mlflow.db").exists()
    assert not list(tmp_path.glob("run/**/*.pt"))


# --- docs/reliability.md ---------------------------------------------------------------------


def test_every_test_cited_in_reliability_md_exists():
    text = (ROOT / "docs" / "reliability.md").read_text()
    cited = sorted(set(re.findall(r"(tests/[\w/]+\.py)::(\w+)(?:\[(\w+)\])?", text)))
    assert len(cited) >= 20
    missing = []
    for path, name, case in cited:
        source = ROOT / path
        # a case of the fault harness (test_fault[NAME]) is the function case_NAME
        wanted = f"case_{case}" if case and name == "test_fault" else name
        if not source.is_file() or not re.search(rf"^def {wanted}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}" + (f"[{case}]" if case else ""))
    assert missing == []
