"""Weighted kNN on frozen features: the cheap accuracy monitor of SSL training.

The classifier of Wu et al. 2018 ("Unsupervised feature learning via non-parametric instance
discrimination", arXiv 1805.01978), as solo-learn and lightly use it: features are
L2-normalized, each query's ``k`` most cosine-similar bank features vote for their class with
weight ``exp(sim / T)``, and the class with the largest summed weight is the prediction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ssl_core.data import ImageData
    from ssl_core.evaluation.protocol import Evaluation

#: Most similarity entries held at once (queries per chunk × bank size): 2**24 float32 is
#: 64 MiB, so a large query set never needs an ``[N_test, N_train]`` matrix.
SIMILARITY_BUDGET = 2**24


def knn_top1(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy of the weighted kNN classifier with ``train_*`` as the memory bank.

    :param train_features: ``[N, D]`` bank features (any float dtype, any device).
    :param train_labels: ``[N]`` bank labels in ``[0, num_classes)``.
    :param test_features: ``[M, D]`` query features, on the bank's device.
    :param test_labels: ``[M]`` query labels.
    :param k: neighbours per query; capped at ``N``.
    :param temperature: ``T`` in the weights ``exp(sim / T)``; smaller trusts the closest more.
    :param num_classes: number of classes; by default one more than the largest label.
    :return: the share of queries whose predicted class is their label, in ``[0, 1]``.
    """
    import torch
    import torch.nn.functional as F

    if train_features.shape[0] == 0 or test_features.shape[0] == 0:
        raise ValueError("knn_top1 needs a non-empty memory bank and at least one query")
    if k < 1 or temperature <= 0:
        raise ValueError(f"knn_top1 needs k >= 1 and temperature > 0, got {k}, {temperature}")
    device = train_features.device
    bank = F.normalize(train_features.float(), dim=1)
    bank_labels = train_labels.to(device=device, dtype=torch.int64)
    if int(bank_labels.min()) < 0:
        raise ValueError("knn_top1 needs labelled bank features (labels >= 0)")
    if num_classes is None:
        num_classes = int(max(int(bank_labels.max()), int(test_labels.max()))) + 1
    k = min(k, bank.shape[0])
    chunk = max(1, SIMILARITY_BUDGET // bank.shape[0])
    correct = 0
    for start in range(0, test_features.shape[0], chunk):
        queries = F.normalize(test_features[start : start + chunk].to(device).float(), dim=1)
        similarity, neighbours = (queries @ bank.T).topk(k, dim=1)
        # Shifting by each row's best similarity scales that row's weights by one constant,
        # which leaves the argmax alone but keeps exp() finite for tiny temperatures.
        weights = ((similarity - similarity[:, :1]) / temperature).exp()
        scores = torch.zeros(queries.shape[0], num_classes, device=device)
        scores.scatter_add_(1, bank_labels[neighbours], weights)
        predicted = scores.argmax(dim=1)
        truth = test_labels[start : start + chunk].to(device=device, dtype=torch.int64)
        correct += int((predicted == truth).sum())
    return correct / test_features.shape[0]


def knn_eval(
    encoder: torch.nn.Module,
    data: ImageData,
    *,
    image_size: int,
    device: torch.device | str,
    k: int,
    temperature: float,
    batch_size: int = 256,
    num_workers: int = 0,
) -> float:
    """Weighted kNN top-1 of ``encoder``: ``data.train`` is the bank, ``data.val`` the queries.

    Features come from :func:`ssl_core.data.extract_features` (evaluation views, encoder in
    eval mode, its mode restored afterwards); the vote runs on the CPU.

    :raises ValueError: when ``data`` has no labelled validation split.
    """
    from ssl_core.data.features import extract_features

    if not data.labelled or data.val is None:
        raise ValueError("knn_eval needs labelled data with a validation split")
    options = {
        "image_size": image_size,
        "device": device,
        "batch_size": batch_size,
        "num_workers": num_workers,
    }
    train_features, train_labels = extract_features(encoder, data.train, **options)
    test_features, test_labels = extract_features(encoder, data.val, **options)
    return knn_top1(
        train_features,
        train_labels,
        test_features,
        test_labels,
        k=k,
        temperature=temperature,
        num_classes=len(data.classes) if data.classes else None,
    )


def knn_eval_sharded(
    encoder: torch.nn.Module,
    data: ImageData,
    *,
    image_size: int,
    device: torch.device | str,
    k: int,
    temperature: float,
) -> float:
    """:func:`knn_eval` of a run spread over processes; the same value on every process.

    Under several processes each extracts the features of every ``world``-th image (a shard),
    rank 0 gathers them, votes, and tells the others the result. In one process it is
    :func:`knn_eval`.
    """
    from ssl_core.training import distributed

    options = {"image_size": image_size, "device": device}
    world = distributed.world_size()
    if world == 1:
        return knn_eval(encoder, data, k=k, temperature=temperature, **options)
    import torch

    from ssl_core.data.features import Shard, extract_features

    if data.val is None:
        raise ValueError("knn_eval needs labelled data with a validation split")
    rank = distributed.rank()
    shards = [
        extract_features(encoder, Shard(items, rank, world), **options)
        for items in (data.train, data.val)
    ]
    gathered = distributed.gather_objects(shards)
    result = None
    if gathered is not None:
        (bank, bank_labels), (queries, labels) = (
            tuple(torch.cat([part[split][i] for part in gathered]) for i in (0, 1))
            for split in (0, 1)
        )
        result = knn_top1(
            bank,
            bank_labels,
            queries,
            labels,
            k=k,
            temperature=temperature,
            num_classes=len(data.classes) if data.classes else None,
        )
    return distributed.broadcast_object(result)


def knn_protocol(encoder: Any, data: ImageData, cfg: Any, device: Any) -> Evaluation:
    """``ssl eval knn``: the training split is the memory bank, the held-out split queries."""
    import torch

    from ssl_core.data.loader import default_workers
    from ssl_core.evaluation.protocol import Evaluation

    top1 = knn_eval(
        encoder,
        data,
        image_size=cfg.data.image_size,
        device=device,
        k=cfg.eval.knn_k,
        temperature=cfg.eval.knn_temperature,
        batch_size=cfg.eval.batch_size,
        num_workers=default_workers(cfg.trainer.num_workers, torch.device(device).type),
    )
    return Evaluation({"knn/top1": top1}, {}, {})
