"""Evaluation of a pretrained encoder: weighted kNN, linear probe, semi-supervised fine-tuning.

``ssl eval PROTOCOL run=SOURCE key=value ...`` loads the online encoder of a pretraining run
and measures it on a labelled dataset's held-out split:

- ``knn``: the weighted kNN top-1 of :mod:`ssl_core.evaluation.knn` (``eval.knn_k``, ``eval.knn_temperature``).
- ``linear``: the linear evaluation protocol. The encoder is frozen; its features of the
  evaluation views are computed once, standardized with the training split's mean and std
  (a BatchNorm without affine parameters, as MAE does), and a linear classifier is trained on
  them with AdamW and a cosine schedule. Top-1 and top-5 on the held-out split.
- ``finetune``: semi-supervised fine-tuning (SimCLR's protocol): encoder and a linear head
  trained end to end with SGD on a class-balanced ``eval.label_fraction`` of the training
  labels, chosen with ``eval.seed``. Top-1 and top-5 on the held-out split.

The source is found by :mod:`ssl_core.evaluation.sources`. The evaluation is tracked as an MLflow run of its own: a child run of the
pretraining run when the source is a run id, tagged ``ssl.source_run_id`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ssl_core.errors import UserError
from ssl_core.evaluation.arguments import SOURCE_KEY, pop_keys, raw_override

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core.config import Selection
    from ssl_core.plugins import Plugins
    from ssl_core.registry import Registry

#: ``ssl eval PROTOCOL``: the module and function of each protocol.
PROTOCOLS = {
    "knn": ("ssl_core.evaluation.knn", "knn_protocol"),
    "linear": ("ssl_core.evaluation.linear", "linear_protocol"),
    "finetune": ("ssl_core.evaluation.finetune", "finetune_protocol"),
}

#: Config groups an evaluation takes from the pretraining run (besides the method's own).
_INHERITED_GROUPS = ("backbone",)
#: Single keys an evaluation takes from the pretraining run: the split of the data depends on
#: the seed, and evaluation runs sit beside the pretraining run in its experiment.
_INHERITED_KEYS = ("trainer.seed", "tracking.experiment")

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

    from ssl_core.config import build_config, flatten, parse_overrides

    given = {key for key, _ in parse_overrides(list(overrides))}
    selectors = [
        f"method={source_config.method.name}",
        f"backbone={source_config.backbone.name}",
        f"augment={source_config.augment.name}",
        f"data={source_config.data.name}",
        f"tracking.run_name={run_name}",
    ]
    cfg, selection = build_config(selectors + list(overrides), registry, report=False)
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


# --- the command ------------------------------------------------------------------------------


def evaluate(protocol: str, args: Sequence[str], plugins: Plugins) -> dict[str, Any]:
    """Run ``ssl eval PROTOCOL key=value ...``; returns the metrics and the runs involved.

    :raises UserError: on a bad source, config or dataset.
    """
    import importlib
    import time

    import torch

    from ssl_core.config import resolve_device
    from ssl_core.evaluation.sources import build_encoder, load_source
    from ssl_core.experiments.mlflow_tracker import log_evaluation
    from ssl_core.experiments.store import DEFAULT_URI

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
    with plugins.running(cfg, [selection.dataset]):
        plugins.hook.ssl_validate_config(config=cfg)
        data = plugins.hook.ssl_build_dataset()
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
    module, function = PROTOCOLS[protocol]
    run_protocol = getattr(importlib.import_module(module), function)
    evaluation = run_protocol(encoder, data, cfg, device)
    run_id = log_evaluation(cfg, source, protocol, evaluation, started_ms)
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
