"""The built-in datasets: digits, folder and synthetic, and their registration."""

from __future__ import annotations

import io
import os
import pickle
import typing
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from ssl_datasets import folder, images, plugin, scan, split

from ssl_core import UserError
from ssl_core.config import component_options
from ssl_core.registry import Registry

IMAGE_SIZE = 16


def make_config(name: str, seed: int = 0, **data: object) -> typing.Any:
    return OmegaConf.create(
        {"data": {"name": name, "image_size": IMAGE_SIZE, **data}, "trainer": {"seed": seed}}
    )


def build(name: str, seed: int = 0, **data: object):
    registry = Registry()
    plugin.ssl_register_datasets(register=registry.registrar("dataset", "datasets"))
    component = registry.get("dataset", name)
    defaults = OmegaConf.structured(component.options)
    config = make_config(name, seed, **{**OmegaConf.to_container(defaults), **data})
    return component.make(config, component_options(component, config)).ssl_build_dataset()


# --- registration ----------------------------------------------------------------------------


def test_registers_the_three_datasets() -> None:
    registry = Registry()
    plugin.ssl_register_datasets(register=registry.registrar("dataset", "datasets"))
    assert registry.names("dataset") == ["digits", "folder", "synthetic"]
    for component in registry:
        assert component.provider == "datasets"
        assert component.description


def test_options_are_typed_and_leave_the_core_keys_alone() -> None:
    registry = Registry()
    plugin.ssl_register_datasets(register=registry.registrar("dataset", "datasets"))
    for component in registry:
        hints = typing.get_type_hints(component.options)
        assert "name" not in hints and "image_size" not in hints
        assert "val_fraction" in hints
        OmegaConf.structured(component.options)  # a valid OmegaConf schema


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_val_fraction_must_be_strictly_inside_zero_one(value: float) -> None:
    with pytest.raises(UserError, match="data.val_fraction"):
        build("synthetic", num_samples=8, val_fraction=value)


# --- digits ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return build("digits")


def test_digits_images_are_rgb_uint8_of_the_view_size(digits) -> None:
    image, label = digits.train[0]
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert image.dtype == np.uint8
    assert isinstance(label, int) and 0 <= label <= 9
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    brightest = max(int(digits.train[i][0].max()) for i in range(50))
    assert 200 <= brightest <= 255  # 0–16 was rescaled to 0–255


def test_digits_split_is_stratified_and_complete(digits) -> None:
    assert len(digits.train) + len(digits.val) == 1797
    assert len(digits.val) == pytest.approx(0.2 * 1797, abs=10)
    assert digits.classes == [str(c) for c in range(10)]
    assert digits.labelled
    val_labels = {label for _, label in digits.val}
    assert val_labels == set(range(10))


def test_digits_split_depends_on_the_seed_only(digits) -> None:
    again = build("digits", seed=0)
    other = build("digits", seed=1)
    assert (again.val.indices == digits.val.indices).all()
    assert not np.array_equal(other.val.indices, digits.val.indices)


def test_digits_sequence_pickles(digits) -> None:
    copy = pickle.loads(pickle.dumps(digits.val))
    assert len(copy) == len(digits.val)
    assert np.array_equal(copy[3][0], digits.val[3][0])


# --- folder ----------------------------------------------------------------------------------


def save_images(root: Path) -> None:
    """Two classes with images in every PIL mode the loader must handle, of mixed sizes."""
    gray = Image.fromarray(np.full((20, 30), 100, dtype=np.uint8), mode="L")
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:12, :, 3] = 255  # top half opaque red, bottom half fully transparent red
    palette = Image.new("P", (17, 13), 1)
    palette.putpalette([0, 0, 0, 10, 220, 30] + [0] * 762)
    deep = np.linspace(1000, 60000, 32 * 18).reshape(32, 18).astype(np.uint16)
    rgb = np.random.default_rng(0).integers(0, 256, (9, 40, 3), dtype=np.uint8)
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "nested").mkdir(parents=True)
    gray.save(root / "cats" / "gray.png")
    Image.fromarray(rgba, mode="RGBA").save(root / "cats" / "alpha.PNG")
    palette.save(root / "cats" / "palette.bmp")
    Image.fromarray(deep).save(root / "dogs" / "deep.png")
    Image.fromarray(rgb).save(root / "dogs" / "nested" / "photo.JPG")
    Image.fromarray(rgb).save(root / "dogs" / "web.webp")
    (root / "dogs" / "notes.txt").write_text("not an image")
    Image.fromarray(rgb).save(root / "dogs" / ".hidden.png")


def all_items(data) -> list[tuple[np.ndarray, int]]:
    return list(data.train) + list(data.val or [])


def test_folder_with_class_subfolders_is_labelled(tmp_path: Path) -> None:
    save_images(tmp_path)
    data = build("folder", path=str(tmp_path), val_fraction=0.5)
    assert data.classes == ["cats", "dogs"]
    assert data.labelled
    assert len(data.train) + len(data.val) == 6
    assert {label for _, label in data.val} == {0, 1}
    by_name = {}
    for part in (data.train, data.val):
        by_name.update(zip([Path(p).name for p in part.paths], part.labels, strict=True))
    assert by_name == {
        "gray.png": 0,
        "alpha.PNG": 0,
        "palette.bmp": 0,
        "deep.png": 1,
        "photo.JPG": 1,
        "web.webp": 1,
    }
    for image, _ in all_items(data):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_folder_converts_every_mode_to_rgb(tmp_path: Path) -> None:
    save_images(tmp_path)
    files = folder.FolderImages(scan.scan_folder(str(tmp_path)).paths, [0] * 6)
    images = {Path(p).name: files[i][0] for i, p in enumerate(files.paths)}
    assert images["gray.png"].shape == (20, 30, 3) and (images["gray.png"] == 100).all()
    alpha = images["alpha.PNG"]
    assert (alpha[:12] == [200, 0, 0]).all()
    assert (alpha[12:] == 0).all()  # transparent pixels are composited on black
    assert (images["palette.bmp"] == [10, 220, 30]).all()
    deep = images["deep.png"]
    assert deep.shape == (32, 18, 3)
    # scaled by 65535 → 255, not clipped: 1000 → 4, 60000 → 233
    assert deep.min() == 4 and deep.max() == 233
    assert images["photo.JPG"].shape == (9, 40, 3)


def test_palette_transparency_is_composited_on_black() -> None:
    palette = Image.new("P", (5, 3), 1)
    palette.putpalette([0, 0, 0, 10, 220, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 1  # palette entry 1 is fully transparent
    rgb = images.pil_to_rgb(palette)
    assert rgb.shape == (3, 5, 3) and rgb.dtype == np.uint8
    assert (rgb == 0).all()


def test_folder_items_pickle_and_load_lazily(tmp_path: Path) -> None:
    save_images(tmp_path)
    data = build("folder", path=str(tmp_path))
    copy = pickle.loads(pickle.dumps(data.train))
    assert isinstance(copy, folder.FolderImages)
    assert np.array_equal(copy[0][0], data.train[0][0])


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (8 + i, 8), (i, i, i)).save(tmp_path / f"{i}.png")
    (tmp_path / "more").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "more" / "x.jpeg")
    data = build("folder", path=str(tmp_path))
    assert data.classes is None and data.val is None and not data.labelled
    assert len(data.train) == 4
    assert {label for _, label in data.train} == {-1}


def test_folder_with_a_single_subfolder_is_unlabelled(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    data = build("folder", path=str(tmp_path))
    assert data.classes is None and len(data.train) == 1


def test_folder_without_path_is_a_user_error() -> None:
    with pytest.raises(UserError, match="data.path is required for data=folder"):
        build("folder")


def test_folder_missing_path_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match="does not exist") as info:
        build("folder", path=str(missing))
    assert str(missing) in str(info.value)


def test_folder_path_to_a_file_is_a_user_error(tmp_path: Path) -> None:
    file = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(file)
    with pytest.raises(UserError, match="is not a directory") as info:
        build("folder", path=str(file))
    assert str(file) in str(info.value)


def test_folder_without_images_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no images found") as info:
        build("folder", path=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message and ".jpg" in message and ".webp" in message
    assert "\n" not in message


# --- folder: unreadable folders and corrupt files ------------------------------------------


def encoded(fmt: str, size: int = 24) -> bytes:
    pixels = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def save_good(root: Path, count: int, prefix: str = "good") -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / f"{prefix}{i}.png")


def save_corrupt(root: Path) -> list[str]:
    """Files named like images that do not decode: not an image, a truncated PNG and WebP."""
    (root / "text.jpg").write_bytes(b"not a jpeg")
    png = encoded("PNG")
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    webp = encoded("WEBP")
    (root / "cut.webp").write_bytes(webp[: len(webp) // 2])
    return ["cut.png", "cut.webp", "text.jpg"]


def save_truncated_jpeg(path: Path) -> None:
    """A JPEG whose header is intact but whose pixel data stops half-way."""
    data = encoded("JPEG", size=64)
    path.write_bytes(data[: len(data) // 2])


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_corrupt_files_are_listed_without_being_opened(tmp_path: Path, capsys) -> None:
    # The scan reads folders only: a corrupt file is found when it is loaded, not before.
    save_good(tmp_path, 3)
    names = save_corrupt(tmp_path)
    data = build("folder", path=str(tmp_path))
    assert sorted(Path(p).name for p in data.train.paths) == sorted(
        names + ["good0.png", "good1.png", "good2.png"]
    )
    assert capsys.readouterr().err == ""


def test_corrupt_files_are_skipped_when_loaded_with_a_warning_naming_each(
    tmp_path: Path, capsys
) -> None:
    save_good(tmp_path, 3)
    save_corrupt(tmp_path)
    data = build("folder", path=str(tmp_path))
    loaded = [image for image, _ in data.train]
    assert len(loaded) == 6  # every index gives an image: a readable one stands in
    paths = data.train.paths
    for i, path in enumerate(paths):
        if Path(path).name.startswith("good"):
            assert np.array_equal(loaded[i], data.train[i][0])
    bad_order = [Path(p).name for p in paths if not Path(p).name.startswith("good")]
    lines = warnings_of(capsys.readouterr().err)
    assert len(lines) == 3  # once per file
    for n, (line, name) in enumerate(zip(lines, bad_order, strict=True), start=1):
        assert line.startswith(f"warning: cannot read image {tmp_path / name} (")
        so_far = "1 unreadable image" if n == 1 else f"{n} unreadable images"
        assert line.endswith(
            f"the next readable image is used in its place ({so_far} so far in this process)"
        )
    assert "cannot identify image file" in next(line for line in lines if "text.jpg" in line)


def test_the_load_warnings_name_five_then_count_by_powers_of_ten(tmp_path: Path, capsys) -> None:
    save_good(tmp_path / "a", 1)
    for i in range(12):
        (tmp_path / f"bad{i:02d}.png").write_bytes(b"garbage")
    data = build("folder", path=str(tmp_path))
    assert Path(data.train.paths[0]).name == "bad00.png"
    image, _ = data.train[0]  # bad00..bad11 fail, a/good0.png stands in
    assert np.array_equal(image, data.train[12][0])
    lines = warnings_of(capsys.readouterr().err)
    assert [line.split()[4].rsplit("/", 1)[1] for line in lines] == [
        "bad00.png",
        "bad01.png",
        "bad02.png",
        "bad03.png",
        "bad04.png",
        "bad09.png",
    ]
    assert lines[-1].endswith("(10 unreadable images so far in this process)")


def test_strict_makes_a_corrupt_file_one_error_when_loaded(tmp_path: Path, capsys) -> None:
    save_good(tmp_path, 3)
    save_corrupt(tmp_path)
    data = build("folder", path=str(tmp_path), strict=True)  # the scan opens nothing
    names = [Path(p).name for p in data.train.paths]
    for name in ("text.jpg", "cut.png", "cut.webp"):
        with pytest.raises(images.UnreadableImage) as info:
            data.train[names.index(name)]
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"cannot read image {tmp_path / name}: ")
        assert message.endswith(
            "fix or remove it, or set data.strict=false to skip unreadable images"
        )
    assert capsys.readouterr().err == ""


def test_only_corrupt_files_fail_when_the_first_is_loaded(tmp_path: Path, capsys) -> None:
    save_corrupt(tmp_path)
    data = build("folder", path=str(tmp_path))
    with pytest.raises(images.UnreadableImage) as info:
        data.train[0]
    assert str(info.value).startswith(
        f"none of the 3 images could be read, e.g. {tmp_path / 'cut.png'}: "
    )
    assert len(warnings_of(capsys.readouterr().err)) == 3


def deny(monkeypatch, denied: Path) -> None:
    """Make listing ``denied`` fail as it does for a folder without read permission."""
    real = os.scandir

    def scandir(path=".", *args, **kwargs):
        if Path(os.fsdecode(path)) == denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_data_path_is_one_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    save_good(tmp_path, 2)
    deny(monkeypatch, tmp_path)
    with pytest.raises(UserError) as info:
        build("folder", path=str(tmp_path))
    assert str(info.value) == (
        f"cannot read the folder {tmp_path}: Permission denied; check its permissions"
    )


def test_unreadable_subfolder_is_skipped_or_strict_error(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    save_good(tmp_path / "cats", 2)
    save_good(tmp_path / "dogs", 2)
    save_good(tmp_path / "private", 2)
    deny(monkeypatch, tmp_path / "private")
    data = build("folder", path=str(tmp_path))
    assert data.classes == ["cats", "dogs"]
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"warning: skipped 1 unreadable folder under {tmp_path}: private/"
    with pytest.raises(UserError, match=r"private/ \(Permission denied\)"):
        build("folder", path=str(tmp_path), strict=True)


def test_image_failing_at_load_is_replaced_by_the_next_with_one_warning(
    tmp_path: Path, capsys
) -> None:
    save_good(tmp_path, 3)
    save_truncated_jpeg(tmp_path / "good1.jpg")  # sorts between good0.png and good1.png
    data = build("folder", path=str(tmp_path))
    assert [Path(p).name for p in data.train.paths][:2] == ["good0.png", "good1.jpg"]
    capsys.readouterr()
    first, again = data.train[1], data.train[1]
    assert np.array_equal(first[0], data.train[2][0])  # the next image stands in
    assert np.array_equal(first[0], again[0])
    (line,) = capsys.readouterr().err.strip().splitlines()  # once per file
    assert line.startswith(f"warning: cannot read image {tmp_path / 'good1.jpg'} (image file is")
    assert line.endswith(
        "the next readable image is used in its place (1 unreadable image so far in this process)"
    )
    assert len(list(data.train)) == 4  # iteration still ends


def test_image_failing_at_load_is_an_error_when_strict(tmp_path: Path) -> None:
    save_good(tmp_path, 2)
    save_truncated_jpeg(tmp_path / "late.jpg")
    data = build("folder", path=str(tmp_path), strict=True)
    late = data.train.paths.index(str(tmp_path / "late.jpg"))
    with pytest.raises(images.UnreadableImage) as info:
        data.train[late]
    message = str(info.value)
    assert message.startswith(f"cannot read image {tmp_path / 'late.jpg'}: image file is")
    assert "data.strict=false" in message and "\n" not in message


def test_strict_error_from_a_loader_worker_stays_one_line(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    save_truncated_jpeg(tmp_path / "late.jpg")
    items = folder.FolderImages([str(tmp_path / "late.jpg")], [-1], strict=True)
    with pytest.raises(images.UnreadableImage) as info:
        list(DataLoader(items, num_workers=1, collate_fn=lambda batch: batch))
    assert str(info.value).startswith(f"cannot read image {tmp_path / 'late.jpg'}: ")
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def test_no_loadable_image_at_all_is_an_error(tmp_path: Path) -> None:
    save_truncated_jpeg(tmp_path / "late.jpg")
    items = folder.FolderImages([str(tmp_path / "late.jpg")], [-1])
    with pytest.raises(images.UnreadableImage, match="none of the 1 images could be read"):
        items[0]


def test_folder_images_with_strict_pickle(tmp_path: Path) -> None:
    save_good(tmp_path, 2)
    items = folder.FolderImages([str(p) for p in sorted(tmp_path.iterdir())], [0, 1], True)
    copy = pickle.loads(pickle.dumps(items))
    assert copy.strict and copy.paths == items.paths
    assert np.array_equal(copy[1][0], items[1][0])


# --- synthetic -------------------------------------------------------------------------------


def test_synthetic_has_the_asked_count_and_classes() -> None:
    data = build("synthetic", num_samples=40, num_classes=4, val_fraction=0.25)
    assert len(data.train) + len(data.val) == 40
    assert len(data.val) == 12  # round(10 · 0.25) = 3 per class
    assert data.classes is not None and len(data.classes) == 4
    assert {label for _, label in data.val} == {0, 1, 2, 3}
    image, _ = data.train[0]
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8


def test_synthetic_is_deterministic_by_seed() -> None:
    first = build("synthetic", seed=3, num_samples=16)
    second = build("synthetic", seed=3, num_samples=16)
    other = build("synthetic", seed=4, num_samples=16)
    for a, b in zip(all_items(first), all_items(second), strict=True):
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(first.train[0][0], other.train[0][0])


def test_synthetic_classes_differ_by_mean_colour() -> None:
    data = build("synthetic", num_samples=40, num_classes=4)
    means = np.zeros((4, 3))
    for image, label in data.train:
        means[label] += image.reshape(-1, 3).mean(0)
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(4, dtype=bool)].min() > 20


# --- split -----------------------------------------------------------------------------------


def test_stratified_split_keeps_every_class_on_both_sides() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    train, val = split.stratified_split(labels, 0.1, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(14))
    assert set(labels[val]) == {0, 1}  # the lone class-2 item stays in train
    assert set(labels[train]) == {0, 1, 2}
