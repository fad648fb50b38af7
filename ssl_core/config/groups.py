"""The core's own option groups: trainer, evaluation, tracking, resume, and the selectors.

Each group is a dataclass of :func:`ssl_core.option` fields; the selected components' options
join the ``backbone``, ``augment`` and ``data`` groups (see :mod:`ssl_core.config.resolve`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ssl_core.options import option


@dataclass
class MethodGroup:
    name: str | None = option(None, "SSL method; may be left out when only one is installed")


@dataclass
class BackboneGroup:
    name: str | None = option(
        None, "encoder name (any registered backbone; default: the installed default backbone)"
    )
    weights: str | None = option(
        None,
        "start the encoder from these weights: a safetensors file (an exported encoder, timm's "
        "model.safetensors), a checkpoint, a run directory or an MLflow run id; every tensor "
        "must fit",
    )


@dataclass
class AugmentGroup:
    name: str = option("auto", "view generator; auto picks the one marked for the device")


@dataclass
class DataGroup:
    name: str | None = option(None, "dataset (default: the installed default dataset)")
    image_size: int = option(32, "view size in pixels (square)", min=8)


#: The largest seed: torch's generators take 64 bits.
SEED_MAX = 2**64 - 1

#: ``trainer.precision`` values: float32, or autocast to bfloat16 or float16.
PRECISIONS = ("32", "bf16", "fp16")
#: ``trainer.collapse`` values: what the collapse guard does when the representation collapses.
COLLAPSE_ACTIONS = ("warn", "stop", "off")


@dataclass
class TrainerOptions:
    device: str = option("auto", "training device", choices=("auto", "cpu", "cuda", "mps"))
    epochs: int = option(100, "passes over the training data", min=1)
    max_steps: int = option(0, "stop after this many optimizer steps (0: no limit)", min=0)
    batch_size: int = option(
        256,
        "images per process and micro-batch (BatchNorm needs >= 2); one optimizer step sees "
        "batch_size x processes x accumulate",
        min=2,
    )
    num_workers: int = option(
        -1,
        "DataLoader workers (-1: none when training on the CPU, else one per core, at most 8)",
        min=-1,
    )
    seed: int = option(
        0, "random seed for data order, views and initialization", min=0, max=SEED_MAX
    )
    log_every: int = option(10, "log metrics every N optimizer steps", min=1)
    channels_last: bool = option(True, "channels_last memory format for conv backbones")
    checkpoint_every: int = option(
        500, "write a checkpoint every N optimizer steps (0: only at epoch ends and the end)", min=0
    )
    keep_checkpoints: int = option(3, "step checkpoints kept in output_dir/checkpoints", min=1)
    deterministic: bool = option(
        False, "deterministic algorithms: a resumed run ends bitwise equal (CPU)"
    )
    skip_nonfinite: int = option(
        0, "steps with a non-finite loss to skip before stopping the run", min=0
    )
    devices: int = option(
        1,
        "processes to train on (DDP); >1 starts them on this machine (at most its GPUs or cores)",
        min=1,
    )
    precision: str = option(
        "32", "autocast dtype of the forward pass (fp16 adds a GradScaler)", choices=PRECISIONS
    )
    accumulate: int = option(1, "micro-batches per optimizer step (gradient accumulation)", min=1)
    compile: bool = option(False, "torch.compile the encoders")
    sync_bn: bool = option(False, "SyncBatchNorm across processes (BYOL's reference does)")
    collapse: str = option(
        "warn",
        "collapse guard on the health metrics (eval.health_every): warn, stop (the run ends "
        "FAILED, its last good checkpoint kept) or off",
        choices=COLLAPSE_ACTIONS,
    )


@dataclass
class ResumeOptions:
    path: str | None = option(
        None, "continue a run: auto (newest checkpoint in output_dir, if any) or a checkpoint path"
    )
    force: bool = option(False, "resume even if keys that change the math differ")


@dataclass
class EvalOptions:
    knn: bool = option(True, "weighted kNN top-1 before and after training (labelled data)")
    knn_k: int = option(20, "neighbours in the kNN vote", min=1)
    knn_temperature: float = option(0.07, "temperature of the kNN weights", min=1e-6)
    knn_every: int = option(
        10, "kNN top-1 during training every N epochs, logged as knn/top1 (0: off)", min=0
    )
    probe: bool = option(
        False, "online linear probe on detached encoder features, logged as probe/top1"
    )
    health_every: int = option(
        10,
        "representation health (std, RankMe, alignment, uniformity of the encoder's and "
        "projections' features) every N optimizer steps, logged as health/* (0: off)",
        min=0,
    )
    probe_lr: float = option(1e-3, "learning rate of the online probe (Adam)", min=0.0)
    batch_size: int = option(256, "ssl eval linear/finetune: images per step", min=2)
    linear_epochs: int = option(100, "ssl eval linear: epochs over the cached features", min=1)
    linear_lr: float = option(1e-3, "ssl eval linear: learning rate (AdamW, cosine)", min=0.0)
    finetune_epochs: int = option(50, "ssl eval finetune: epochs over the labelled subset", min=1)
    finetune_lr: float = option(
        0.01, "ssl eval finetune: learning rate (SGD, momentum 0.9, cosine)", min=0.0
    )
    label_fraction: float = option(
        0.1, "ssl eval finetune: share of the training labels kept, per class", min=0.0, max=1.0
    )
    seed: int = option(
        0,
        "ssl eval: seed of the label subset, classifier init and batch order",
        min=0,
        max=SEED_MAX,
    )
    random_init: bool = option(
        False, "ssl eval: the source's backbone freshly initialized (trainer.seed), a baseline"
    )


@dataclass
class TrackingOptions:
    enabled: bool = option(True, "track the run in MLflow")
    uri: str = option("sqlite:///mlflow.db", "MLflow tracking URI (store or server)")
    experiment: str = option("ssl_core", "MLflow experiment name")
    run_name: str | None = option(None, "MLflow run name (default: method-backbone-time)")


OPTIMIZERS = ("lars", "sgd", "adamw")


@dataclass
class OptimOptions:
    """Optimizer, learning rate and schedule; the defaults are BYOL's recipe for ≤100 epochs."""

    name: str = option("lars", "optimizer", choices=OPTIMIZERS)
    lr: float = option(0.45, "base learning rate at batch 256; scaled by batch_size/256", min=0.0)
    weight_decay: float = option(
        1e-6, "weight decay; biases and normalization parameters get none", min=0.0
    )
    momentum: float = option(0.9, "momentum of lars and sgd, beta1 of adamw; < 1", min=0.0, max=1.0)
    trust_coefficient: float = option(1e-3, "LARS trust coefficient eta in eta*|w|/|g|", min=0.0)
    warmup_epochs: float = option(
        10.0,
        "epochs of linear warm-up before the cosine decay; at most a fifth of the run's steps",
        min=0.0,
    )
    weight_decay_end: float | None = option(
        None,
        "weight decay at the last step, reached along a cosine from weight_decay (DINO); "
        "null: constant",
        min=0.0,
    )
    clip_grad: float = option(0.0, "clip gradient norms to this value (0: no clipping)", min=0.0)
    clip_grad_per_param: bool = option(
        False, "clip each parameter's gradient norm on its own (DINO) instead of the global norm"
    )


def core_groups() -> dict[str, type]:
    return {
        "method": MethodGroup,
        "backbone": BackboneGroup,
        "augment": AugmentGroup,
        "data": DataGroup,
        "optim": OptimOptions,
        "trainer": TrainerOptions,
        "eval": EvalOptions,
        "tracking": TrackingOptions,
        "resume": ResumeOptions,
    }


#: Groups whose bare value selects a component: ``backbone=resnet18`` is ``backbone.name=...``.
SELECTOR_GROUPS = {
    "method": "method",
    "backbone": "backbone",
    "augment": "view_generator",
    "data": "dataset",
}
ROOT_KEYS = {"output_dir": option(None, "run directory (default: runs/<run name>)")}
