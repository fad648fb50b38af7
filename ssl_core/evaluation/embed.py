"""``ssl embed``: a pretrained encoder's embeddings of every image of a dataset, as a file.

``ssl embed run=SOURCE data=folder data.path=DIR out=embeddings.parquet`` loads the online
encoder of a run (as ``ssl eval`` does: a run id, a run directory or a checkpoint), builds
the dataset (the run's own unless ``data=`` names another; any ``data.*`` key may be given)
and writes one row per image (:mod:`ssl_core.evaluation.embeddings`): the training split's
images, then the held-out split's, each in the dataset's order. Every image goes through the
evaluation view (:func:`ssl_core.data.transforms.eval_transform` at ``data.image_size``, the
run's size by default) and ImageNet normalization, in batches of ``eval.batch_size`` on
``trainer.device``; the encoder runs in eval mode. ``head=NAME`` adds the output of the
method's submodule ``NAME`` (``head=projector``) on the same features, which needs the run's
checkpoint. A run id's embeddings are logged to MLflow as the artifact of an evaluation child
run (tag ``ssl.eval=embed``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssl_core.errors import UserError
from ssl_core.evaluation.arguments import SOURCE_KEY, pop_keys, raw_override
from ssl_core.evaluation.embeddings import FIXED_COLUMNS, Embeddings, check_format

if TYPE_CHECKING:
    import torch

    from ssl_core.evaluation.sources import Source
    from ssl_core.plugins import Plugins

OUT_KEY = "out"
HEAD_KEY = "head"
DEFAULT_OUT = "embeddings.parquet"


class Rows(Sequence):
    """The training split's items, then the held-out split's: every image once, picklable."""

    def __init__(self, parts: Sequence[tuple[str, Sequence[Any]]]) -> None:
        self.parts = [(name, items) for name, items in parts if items is not None]

    def __len__(self) -> int:
        return sum(len(items) for _, items in self.parts)

    def _locate(self, index: int) -> tuple[str, Sequence[Any], int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        for name, items in self.parts:
            if index < len(items):
                return name, items, index
            index -= len(items)
        raise IndexError(index)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        _, items, i = self._locate(index)
        return items[i]

    def describe(self) -> tuple[list[str], list[str]]:
        """Each row's key (the sequence's ``key(i)``, else ``split/i``) and split."""
        keys: list[str] = []
        splits: list[str] = []
        for name, items in self.parts:
            key = getattr(items, "key", None)
            keys.extend(str(key(i)) if key else f"{name}/{i}" for i in range(len(items)))
            splits.extend([name] * len(items))
        return keys, splits


class Given(Sequence):
    """Images handed over directly (numpy ``uint8 HxWx3`` arrays or PIL images), unlabelled."""

    def __init__(self, images: Sequence[Any]) -> None:
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:  # type: ignore[override]
        image = self.images[index]
        if hasattr(image, "convert"):  # a PIL image
            image = np.asarray(image.convert("RGB"))
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise UserError(
                f"image {index} is a {array.dtype} array of shape {array.shape}; give uint8 "
                "HxWx3 arrays or PIL images"
            )
        return array, -1

    def key(self, index: int) -> str:
        return str(index)


def _progress(total: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A bar on a terminal, else a line every 10 s: ``(advance(n), close())``."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("[bold]embed"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
        )
        bar.start()
        task = bar.add_task("embed", total=total)
        return (lambda n: bar.update(task, advance=n)), bar.stop
    state = {"done": 0, "shown": time.monotonic()}

    def advance(n: int) -> None:
        state["done"] += n
        if time.monotonic() - state["shown"] >= 10 or state["done"] == total:
            state["shown"] = time.monotonic()
            print(f"embed: {state['done']}/{total} images", file=sys.stderr, flush=True)

    return advance, lambda: None


def _checkpoint_of(spec: str, uri: str, tmp: str) -> Path:
    """The checkpoint of a source, for its method's heads (fetched from MLflow for a run id)."""
    from ssl_core.training.resume import step_checkpoints

    path = Path(spec).expanduser()
    if path.is_dir():
        found = [path / "checkpoint.pt"] if (path / "checkpoint.pt").is_file() else []
        found = found or step_checkpoints(path)[-1:]
        if found:
            return found[0]
    elif path.is_file() and path.suffix != ".safetensors":
        return path
    elif not path.exists():
        from ssl_core.experiments.store import open_store, quiet_downloads

        client = open_store(uri)
        if "checkpoint" in {a.path for a in client.list_artifacts(spec)}:
            with quiet_downloads():
                return Path(client.download_artifacts(spec, "checkpoint/checkpoint.pt", tmp))
    raise UserError(f"{HEAD_KEY}= needs the run's checkpoint, and {spec} has none")


def method_head(spec: str, name: str, plugins: Plugins, uri: str) -> torch.nn.Module:
    """The submodule ``name`` of the method's model of the run ``spec``, trained, eval mode.

    :raises UserError: when the run has no checkpoint or its model no such submodule.
    """
    import tempfile

    from omegaconf import OmegaConf

    from ssl_core.evaluation.sources import build_encoder
    from ssl_core.training.checkpoint import load_checkpoint

    if name in FIXED_COLUMNS:
        raise UserError(f"{HEAD_KEY}={name} would clash with a column; valid: a module name")
    with tempfile.TemporaryDirectory(prefix="ssl-embed-") as tmp:
        state = load_checkpoint(_checkpoint_of(spec, uri, tmp))
    config = OmegaConf.create(state["config"])
    method = plugins.registry.get("method", str(config.method.name))
    encoder = build_encoder(config, plugins)
    with plugins.running(config, [method]):
        model = plugins.hook.ssl_build_heads(backbone=encoder)
    model.load_state_dict(state["model"])
    modules = dict(model.named_children())
    if name not in modules or modules[name] is encoder:
        valid = ", ".join(
            n for n, m in modules.items() if m is not encoder and any(True for _ in m.parameters())
        )
        raise UserError(
            f"{HEAD_KEY}={name}: method '{config.method.name}' has no such head; valid: {valid}"
        )
    return modules[name].eval()


def compute(
    source: Source,
    rows: Rows,
    *,
    image_size: int,
    device: torch.device,
    batch_size: int,
    head: torch.nn.Module | None = None,
    head_name: str | None = None,
    classes: list[str] | None = None,
) -> Embeddings:
    """The embeddings of ``rows`` with ``source``'s encoder (and ``head`` on its features)."""
    import torch

    from ssl_core.data.features import extract_features

    advance, close = _progress(len(rows))
    encoder = source.encoder.to(device)
    try:
        features, labels = extract_features(
            encoder,
            rows,
            image_size=image_size,
            device=device,
            batch_size=batch_size,
            progress=advance,
        )
    finally:
        close()
    projected = None
    if head is not None:
        head = head.to(device)
        with torch.no_grad():
            parts = [
                head(features[i : i + batch_size].to(device)).float().cpu()
                for i in range(0, len(features), batch_size)
            ]
        projected = torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)
    keys, splits = rows.describe()
    metadata = {
        "source": source.spec,
        "backbone": str(source.config.backbone.name),
        "image_size": str(image_size),
    }
    if source.run_id:
        metadata["source_run_id"] = source.run_id
    return Embeddings(
        keys=keys,
        splits=splits,
        labels=labels.numpy(),
        embeddings=features.numpy(),
        classes=classes,
        head_name=head_name,
        head=projected,
        metadata=metadata,
    )


def embed(
    args: Sequence[str], plugins: Plugins, images: Sequence[Any] | None = None
) -> tuple[Embeddings, dict[str, Any]]:
    """``ssl embed run=SOURCE [out=FILE] [head=NAME] key=value ...``.

    :param images: images to embed instead of a dataset (the Python API's in-memory case).
    :return: the embeddings, and what was written and logged.
    :raises UserError: on a bad source, config, dataset, output file or head.
    """
    import torch

    from ssl_core.config import resolve_device
    from ssl_core.evaluation.evaluate import eval_config
    from ssl_core.evaluation.sources import load_source
    from ssl_core.experiments.mlflow_tracker import log_embeddings
    from ssl_core.experiments.store import DEFAULT_URI

    started_ms = int(time.time() * 1000)
    special, overrides = pop_keys(args, [SOURCE_KEY, OUT_KEY, HEAD_KEY])
    out = special.get(OUT_KEY)
    out_path = check_format(out) if out else None  # before any work
    uri = raw_override(overrides, "tracking.uri", DEFAULT_URI)
    spec = special.get(SOURCE_KEY, "")
    source = load_source(spec, plugins, uri)
    cfg, selection = eval_config(source.config, overrides, plugins.registry, run_name="embed")
    head_name = special.get(HEAD_KEY) or None
    head = method_head(spec, head_name, plugins, uri) if head_name else None
    device = torch.device(resolve_device(cfg.trainer.device))
    if images is not None:
        rows, classes = Rows([("", Given(images))]), None
    else:
        with plugins.running(cfg, [selection.dataset]):
            plugins.hook.ssl_validate_config(config=cfg)
            data = plugins.hook.ssl_build_dataset()
        rows, classes = Rows([("train", data.train), ("val", data.val)]), data.classes
    if not len(rows):
        raise UserError(f"data={cfg.data.name} holds no images to embed")
    embeddings = compute(
        source,
        rows,
        image_size=int(cfg.data.image_size),
        device=device,
        batch_size=int(cfg.eval.batch_size),
        head=head,
        head_name=head_name,
        classes=classes,
    )
    info: dict[str, Any] = {"rows": len(embeddings), "dim": embeddings.embeddings.shape[1]}
    info.update(source=source.spec, source_run_id=source.run_id, out=None, eval_run_id=None)
    if out_path is not None:
        info["out"] = str(embeddings.save(out_path))
        info["eval_run_id"] = log_embeddings(cfg, source, out_path, info, started_ms)
    return embeddings, info


def describe(embeddings: Embeddings, info: dict[str, Any]) -> str:
    """One line for the terminal: what was written, and where it was logged."""
    head = (
        f" and {embeddings.head_name} {embeddings.head.shape[1]}"
        if embeddings.head is not None
        else ""
    )
    where = (
        f"; mlflow run {info['eval_run_id']}, child of run {info['source_run_id']}"
        if info.get("eval_run_id")
        else ""
    )
    return (
        f"wrote {info['out']}: {info['rows']} rows, embedding {info['dim']}{head} "
        f"[{embeddings.metadata.get('backbone')} of {info['source']}]{where}"
    )
