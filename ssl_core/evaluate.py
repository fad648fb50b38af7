"""Evaluation of a pretrained encoder: weighted kNN, linear probe, semi-supervised fine-tuning.

``ssl eval PROTOCOL run=SOURCE key=value ...`` loads the online encoder of a pretraining run
and measures it on a labelled dataset's held-out split:

- ``knn``: the weighted kNN top-1 of :mod:`ssl_core.knn` (``eval.knn_k``, ``eval.knn_temperature``).
- ``linear``: the linear evaluation protocol. The encoder is frozen; its features of the
  evaluation views are computed once, standardized with the training split's mean and std
  (a BatchNorm without affine parameters, as MAE does), and a linear classifier is trained on
  them with AdamW and a cosine schedule. Top-1 and top-5 on the held-out split.
- ``finetune``: semi-supervised fine-tuning (SimCLR's protocol): encoder and a linear head
  trained end to end with SGD on a class-balanced ``eval.label_fraction`` of the training
  labels, chosen with ``eval.seed``. Top-1 and top-5 on the held-out split.

A source is a checkpoint file, a run directory (its ``checkpoint.pt``, or its
``encoder.safetensors`` and ``config.yaml``), or an MLflow run id looked up in
``tracking.uri``. The evaluation is tracked as an MLflow run of its own: a child run of the
pretraining run when the source is a run id, tagged ``ssl.source_run_id`` otherwise.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from .config import Selection
    from .data import ImageData
    from .plugins import Plugins
    from .registry import Registry

PROTOCOLS = ("knn", "linear", "finetune")

#: Keys of ``ssl eval``/``ssl export`` that are not config keys.
SOURCE_KEY = "run"

#: Config groups an evaluation takes from the pretraining run (besides the method's own).
_INHERITED_GROUPS = ("backbone",)
#: Single keys an evaluation takes from the pretraining run: the split of the data depends on
#: the seed, and evaluation runs sit beside the pretraining run in its experiment.
_INHERITED_KEYS = ("trainer.seed", "tracking.experiment")


# --- arguments --------------------------------------------------------------------------------


def pop_keys(args: Sequence[str], keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``key=value`` arguments into the named non-config ``keys`` and the rest."""
    found: dict[str, str] = {}
    rest: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.strip() in keys:
            found[key.strip()] = value
        else:
            rest.append(arg)
    return found, rest


def raw_override(args: Sequence[str], key: str, default: str) -> str:
    """The last value given for ``key`` among ``key=value`` arguments, else ``default``."""
    value = default
    for arg in args:
        k, sep, v = arg.partition("=")
        if sep and k.strip() == key:
            value = v
    return value


# --- sources ----------------------------------------------------------------------------------


@dataclass
class Source:
    """A pretrained encoder with the resolved config of the run that trained it.

    ``run_id`` is the pretraining run's MLflow id when known; ``in_store`` says that the run
    was found in the tracking store being used (evaluations then nest under it).
    """

    encoder: torch.nn.Module
    config: DictConfig
    spec: str
    run_id: str | None = None
    in_store: bool = False
    experiment_id: str | None = None


@contextmanager
def _components(plugins: Plugins, config: Any, components: Sequence[Any]) -> Iterator[None]:
    """Register the run plugins of ``components`` (built from ``config``) for the body."""
    names = []
    try:
        for component in components:
            name = f"eval:{component.kind}:{component.name}"
            plugins.pm.register(component.factory(config), name=name)
            names.append(name)
        yield
    finally:
        for name in names:
            plugins.pm.unregister(name=name)


def build_encoder(config: Any, plugins: Plugins) -> torch.nn.Module:
    """A fresh encoder as the run's backbone component builds it from ``config``."""
    component = plugins.registry.get("backbone", str(config.backbone.name))
    with _components(plugins, config, [component]):
        encoder = plugins.hook.ssl_build_backbone(config=config)
    if encoder is None:
        raise RuntimeError(f"backbone '{component.name}' built nothing")
    return encoder


def _load_weights(encoder: torch.nn.Module, weights: dict[str, Any], spec: str, name: str) -> None:
    try:
        encoder.load_state_dict(weights)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise UserError(f"the weights of {spec} do not fit backbone '{name}': {first}") from None


def _from_checkpoint(path: Path, spec: str, plugins: Plugins) -> Source:
    from omegaconf import OmegaConf

    from .checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"{spec} is not an ssl_core checkpoint: {first}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"{spec} is not an ssl_core checkpoint (no model and config in it)")
    config = OmegaConf.create(state["config"])
    prefix = str(state.get("encoder_prefix") or "")
    model = state["model"]
    weights = (
        {k[len(prefix) + 1 :]: v for k, v in model.items() if k.startswith(prefix + ".")}
        if prefix
        else dict(model)
    )
    encoder = build_encoder(config, plugins)
    _load_weights(encoder, weights, spec, str(config.backbone.name))
    return Source(encoder, config, spec, run_id=state.get("mlflow_run_id"))


def _from_weights(weights_path: Path, config_path: Path, spec: str, plugins: Plugins) -> Source:
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    config = OmegaConf.load(config_path)
    encoder = build_encoder(config, plugins)
    _load_weights(encoder, load_file(str(weights_path)), spec, str(config.backbone.name))
    return Source(encoder, config, spec)


def _from_path(path: Path, spec: str, plugins: Plugins) -> Source:
    if path.is_dir():
        if (path / "checkpoint.pt").is_file():
            return _from_checkpoint(path / "checkpoint.pt", spec, plugins)
        if (path / "encoder.safetensors").is_file() and (path / "config.yaml").is_file():
            return _from_weights(path / "encoder.safetensors", path / "config.yaml", spec, plugins)
        raise UserError(
            f"{spec} is a directory without checkpoint.pt or encoder.safetensors + config.yaml"
        )
    if path.suffix == ".safetensors":
        config_path = path.parent / "config.yaml"
        if not config_path.is_file():
            raise UserError(
                f"{spec} needs the run's config.yaml beside it to know its backbone; or pass "
                "the run directory, its checkpoint.pt or its MLflow run id"
            )
        return _from_weights(path, config_path, spec, plugins)
    return _from_checkpoint(path, spec, plugins)


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow progress bars for the one or two files a source needs."""
    import os

    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _from_run(run_id: str, uri: str, plugins: Plugins) -> Source:
    from .store import get_run, open_store

    client = open_store(uri)
    mlrun = get_run(client, run_id, uri)
    names = {a.path for a in client.list_artifacts(run_id)}
    with tempfile.TemporaryDirectory(prefix="ssl-eval-") as tmp, _quiet_downloads():
        if {"encoder", "config"} <= names:
            weights = client.download_artifacts(run_id, "encoder/encoder.safetensors", tmp)
            config = client.download_artifacts(run_id, "config/config.yaml", tmp)
            source = _from_weights(Path(weights), Path(config), run_id, plugins)
        elif "checkpoint" in names:
            path = client.download_artifacts(run_id, "checkpoint/checkpoint.pt", tmp)
            source = _from_checkpoint(Path(path), run_id, plugins)
        else:
            raise UserError(
                f"run {run_id} ({mlrun.info.status}) has no encoder, config or checkpoint "
                "artifacts; evaluate a finished run or its checkpoint file"
            )
    source.run_id, source.in_store = run_id, True
    source.experiment_id = mlrun.info.experiment_id
    return source


def load_source(spec: str, plugins: Plugins, tracking_uri: str) -> Source:
    """The encoder of ``spec``: a checkpoint, a run directory, weights, or an MLflow run id.

    :raises UserError: when ``spec`` is none of them, or its weights do not fit its backbone.
    """
    if not spec:
        raise UserError("name the pretrained encoder with run=RUN_ID or run=PATH/checkpoint.pt")
    path = Path(spec).expanduser()
    if path.exists():
        return _from_path(path, spec, plugins)
    looks_like_path = "/" in spec or spec.endswith((".pt", ".safetensors", ".yaml"))
    if looks_like_path:
        raise UserError(f"run={spec}: no such file or directory")
    return _from_run(spec, tracking_uri, plugins)


# --- the evaluation config --------------------------------------------------------------------


def eval_config(
    source_config: Any, overrides: Sequence[str], registry: Registry, run_name: str
) -> tuple[DictConfig, Selection]:
    """The config of an evaluation: the pretraining run's backbone, data and seed, then
    ``overrides`` (``data=...``, ``eval.*``, ``trainer.device``, ``tracking.*``).

    The data options of the pretraining run are kept when ``data`` names the same dataset;
    for another dataset only ``data.image_size`` (the size the encoder was trained at) is.
    """
    from omegaconf import OmegaConf

    from .config import build_config, flatten, parse_overrides

    given = {key for key, _ in parse_overrides(list(overrides))}
    selectors = [
        f"method={source_config.method.name}",
        f"backbone={source_config.backbone.name}",
        f"augment={source_config.augment.name}",
        f"data={source_config.data.name}",
        f"tracking.run_name={run_name}",
    ]
    cfg, selection = build_config(selectors + list(overrides), registry)
    same_data = str(cfg.data.name) == str(source_config.data.name)
    method_group = str(source_config.method.name)
    OmegaConf.set_readonly(cfg, False)
    for key, value in flatten(source_config).items():
        group = key.split(".")[0]
        inherit = (
            group in _INHERITED_GROUPS
            or group == method_group
            or key in _INHERITED_KEYS
            or (group == "data" and (same_data or key == "data.image_size"))
        )
        if not inherit or key in given or OmegaConf.select(cfg, key, default=KeyError) is KeyError:
            continue
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except Exception:
            continue  # an option whose type changed since the run keeps today's default
    OmegaConf.set_readonly(cfg, True)
    return cfg, selection


# --- protocols --------------------------------------------------------------------------------


def balanced_subset(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset: ``fraction`` of every class.

    Each class keeps ``round(n * fraction)`` of its ``n`` items, at least one; which ones
    depends only on ``seed``.

    :raises ValueError: unless ``0 < fraction <= 1``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed) % 2**63, 3])
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(np.floor(len(members) * fraction + 0.5)))
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """``{k: share of rows whose label is among the k largest logits}``; k capped at classes."""
    import torch

    if logits.shape[0] == 0:
        return {k: 0.0 for k in ks}
    largest = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = largest == labels.view(-1, 1).to(largest.device)
    return {k: float(hits[:, :k].any(dim=1).to(torch.float32).mean()) for k in ks}


def _cosine(optimizer: Any, total_steps: int) -> Any:
    import torch

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _head(num_features: int, num_classes: int, seed: int) -> torch.nn.Linear:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Linear(num_features, num_classes)


@dataclass
class LinearClassifier:
    """A linear layer on standardized features: ``head((x - mean) / std)``."""

    mean: torch.Tensor
    std: torch.Tensor
    head: torch.nn.Linear

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            x = (features.to(self.mean.device) - self.mean) / self.std
            return self.head(x)


def train_linear(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Any = None,
) -> LinearClassifier:
    """Fit a linear classifier to fixed features with AdamW and a cosine schedule.

    :param features: ``[N, D]`` training features; ``labels`` ``[N]`` in ``[0, num_classes)``.
    :param on_epoch: called as ``on_epoch(epoch, mean_loss)`` after each epoch.
    """
    import torch
    import torch.nn.functional as F

    device = torch.device(device)
    x = features.to(device, torch.float32)
    y = labels.to(device, torch.int64)
    mean = x.mean(0, keepdim=True)
    std = x.std(0, keepdim=True).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(mean)
    x = (x - mean) / std
    head = _head(x.shape[1], num_classes, seed).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    scheduler = _cosine(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(x.shape[0], generator=generator).to(device)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(head(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * batch.shape[0]
        if on_epoch is not None:
            on_epoch(epoch, total / x.shape[0])
    head.eval()
    return LinearClassifier(mean, std, head)


def _num_classes(data: ImageData) -> int:
    if data.classes:
        return len(data.classes)
    return int(max(label for _, label in data.train)) + 1


def _workers(requested: int) -> int:
    import os

    if requested >= 0:
        return requested
    return max(0, min(len(os.sched_getaffinity(0)), 8))


@dataclass
class Evaluation:
    """What a protocol measured: final metrics, per-epoch histories, and facts to log."""

    metrics: dict[str, float]
    history: dict[str, list[tuple[int, float]]]
    params: dict[str, Any]


def knn_protocol(encoder: Any, data: ImageData, cfg: Any, device: Any) -> Evaluation:
    """Weighted kNN top-1: the training split is the memory bank, the held-out split queries."""
    from .knn import knn_eval

    top1 = knn_eval(
        encoder,
        data,
        image_size=cfg.data.image_size,
        device=device,
        k=cfg.eval.knn_k,
        temperature=cfg.eval.knn_temperature,
        batch_size=cfg.eval.batch_size,
        num_workers=_workers(cfg.trainer.num_workers),
    )
    return Evaluation({"knn/top1": top1}, {}, {})


def linear_protocol(encoder: Any, data: ImageData, cfg: Any, device: Any) -> Evaluation:
    """Linear evaluation: frozen encoder, features cached once, linear classifier on them."""
    from .loader import extract_features

    options = {
        "image_size": cfg.data.image_size,
        "device": device,
        "batch_size": cfg.eval.batch_size,
        "num_workers": _workers(cfg.trainer.num_workers),
    }
    train_x, train_y = extract_features(encoder, data.train, **options)
    val_x, val_y = extract_features(encoder, data.val, **options)
    losses: list[tuple[int, float]] = []
    classifier = train_linear(
        train_x,
        train_y,
        _num_classes(data),
        epochs=cfg.eval.linear_epochs,
        lr=cfg.eval.linear_lr,
        batch_size=cfg.eval.batch_size,
        seed=cfg.eval.seed,
        device=device,
        on_epoch=lambda epoch, loss: losses.append((epoch, loss)),
    )
    val = topk_accuracy(classifier(val_x), val_y)
    train = topk_accuracy(classifier(train_x), train_y, ks=(1,))
    metrics = {"linear/top1": val[1], "linear/top5": val[5], "linear/train_top1": train[1]}
    params = {"num_train": len(train_y), "num_val": len(val_y), "num_features": train_x.shape[1]}
    return Evaluation(metrics, {"linear/train_loss": losses}, params)


class _Subset(Sequence):
    """The items of ``items`` at ``indices``, read on access (images stay lazy)."""

    def __init__(self, items: Sequence[Any], indices: np.ndarray) -> None:
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.items[int(self.indices[index])]


class _EvalViews:
    """Picklable image → ``{"image": tensor}`` for the fine-tuning loader's workers."""

    def __init__(self, image_size: int) -> None:
        from .loader import eval_transform

        self.transform = eval_transform(image_size)

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        return {"image": self.transform(image)}


def finetune_protocol(encoder: Any, data: ImageData, cfg: Any, device: Any) -> Evaluation:
    """Semi-supervised fine-tuning of encoder + linear head on a class-balanced label subset."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from .loader import SampleDataset, extract_features, normalize

    fraction = float(cfg.eval.label_fraction)
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"eval.label_fraction={fraction} must be > 0 and <= 1 (0.01 is 1 %)")
    labels = np.asarray([label for _, label in data.train])
    subset = balanced_subset(labels, fraction, cfg.eval.seed)
    batch_size = min(cfg.eval.batch_size, len(subset))
    generator = torch.Generator().manual_seed(cfg.eval.seed)
    workers = _workers(cfg.trainer.num_workers)
    loader = DataLoader(
        SampleDataset(_Subset(data.train, subset), _EvalViews(cfg.data.image_size)),
        batch_size=batch_size,
        shuffle=True,
        # a last batch of one image would give BatchNorm a single value per channel
        drop_last=len(subset) % batch_size == 1,
        generator=generator,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    torch.manual_seed(cfg.eval.seed)
    model = copy.deepcopy(encoder).to(device)
    head = _head(model.num_features, _num_classes(data), cfg.eval.seed).to(device)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(
        params, lr=cfg.eval.finetune_lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    epochs = cfg.eval.finetune_epochs
    scheduler = _cosine(optimizer, epochs * len(loader))
    losses: list[tuple[int, float]] = []
    for epoch in range(1, epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for batch in loader:
            x = normalize(batch["image"].to(device, non_blocking=True))
            y = batch["label"].to(device)
            loss = F.cross_entropy(head(model(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * y.shape[0]
            seen += y.shape[0]
        losses.append((epoch, total / max(seen, 1)))
    val_x, val_y = extract_features(
        model,
        data.val,
        image_size=cfg.data.image_size,
        device=device,
        batch_size=cfg.eval.batch_size,
        num_workers=workers,
    )
    head.eval()
    with torch.no_grad():
        val = topk_accuracy(head(val_x.to(device)).cpu(), val_y)
    metrics = {"finetune/top1": val[1], "finetune/top5": val[5]}
    facts = {"num_labelled": len(subset), "num_train": len(labels), "num_val": len(val_y)}
    return Evaluation(metrics, {"finetune/train_loss": losses}, facts)


PROTOCOL_FUNCTIONS = {
    "knn": knn_protocol,
    "linear": linear_protocol,
    "finetune": finetune_protocol,
}


# --- tracking ---------------------------------------------------------------------------------


def _log_evaluation(
    cfg: Any, source: Source, protocol: str, evaluation: Evaluation, started_ms: int
) -> str | None:
    """Log the evaluation as an MLflow run; returns its id (None when tracking is off)."""
    if not cfg.tracking.enabled:
        return None
    import time

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from .config import flatten

    # The store was checked by ssl_validate_config; like `ssl run`, an evaluation of a
    # checkpoint may be the first run of a new store.
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    tags = {"ssl.eval": protocol, "ssl.source": source.spec}
    if source.run_id:
        tags["ssl.source_run_id"] = source.run_id
    experiment_id = source.experiment_id if source.in_store else None
    if source.in_store and source.run_id:
        tags["mlflow.parentRunId"] = source.run_id
    if experiment_id is None:
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(cfg.tracking.experiment)
        )
    run = client.create_run(
        experiment_id, start_time=started_ms, run_name=cfg.tracking.run_name, tags=tags
    )
    run_id = run.info.run_id
    params = {"eval.protocol": protocol, "source": source.spec}
    for key, value in flatten(cfg).items():
        if key.split(".")[0] in ("eval", "data", "backbone") or key == "trainer.seed":
            params[key] = value
    params.update(evaluation.params)
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in evaluation.metrics.items()]
    for key, points in evaluation.history.items():
        metrics.extend(Metric(key, float(v), now, step) for step, v in points)
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    client.set_terminated(run_id, status="FINISHED")
    return run_id


# --- the command ------------------------------------------------------------------------------


def evaluate(protocol: str, args: Sequence[str], plugins: Plugins) -> dict[str, Any]:
    """Run ``ssl eval PROTOCOL key=value ...``; returns the metrics and the runs involved.

    :raises UserError: on a bad source, config or dataset.
    """
    import time

    import torch

    from .config import resolve_device
    from .store import DEFAULT_URI

    if protocol not in PROTOCOLS:
        raise UserError(f"unknown evaluation '{protocol}'; valid: {', '.join(PROTOCOLS)}")
    started_ms = int(time.time() * 1000)
    special, overrides = pop_keys(args, [SOURCE_KEY])
    uri = raw_override(overrides, "tracking.uri", DEFAULT_URI)
    source = load_source(special.get(SOURCE_KEY, ""), plugins, uri)
    cfg, selection = eval_config(
        source.config, overrides, plugins.registry, run_name=f"eval-{protocol}"
    )
    device = torch.device(resolve_device(cfg.trainer.device))
    with _components(plugins, cfg, [selection.dataset]):
        plugins.hook.ssl_validate_config(config=cfg)
        data = plugins.hook.ssl_build_dataset(config=cfg)
    if data is None or not data.labelled:
        raise UserError(
            f"ssl eval needs labelled data with a held-out split; data={cfg.data.name} has none"
        )
    if cfg.eval.random_init:
        # The baseline: the same architecture and options, before any training.
        torch.manual_seed(cfg.trainer.seed)
        source.encoder = build_encoder(source.config, plugins)
    torch.manual_seed(cfg.eval.seed)
    encoder = source.encoder.to(device)
    evaluation = PROTOCOL_FUNCTIONS[protocol](encoder, data, cfg, device)
    run_id = _log_evaluation(cfg, source, protocol, evaluation, started_ms)
    return {
        "protocol": protocol,
        "source": source.spec,
        "source_run_id": source.run_id,
        "nested": source.in_store and bool(run_id),
        "eval_run_id": run_id,
        "backbone": str(cfg.backbone.name),
        "random_init": bool(cfg.eval.random_init),
        "data": str(cfg.data.name),
        "metrics": evaluation.metrics,
        "params": evaluation.params,
    }


def describe(result: dict[str, Any]) -> str:
    """One line for the terminal: the protocol's metrics and where they were logged."""
    metrics = " ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items())
    where = f"; mlflow run {result['eval_run_id']}" if result["eval_run_id"] else ""
    parent = f", child of run {result['source_run_id']}" if result.get("nested") else ""
    init = ", at initialization" if result.get("random_init") else ""
    what = f"[{result['backbone']}{init} on {result['data']}]"
    return f"{result['protocol']}: {metrics} {what}{where}{parent}"
