"""timm's pretrained weights for ``backbone.pretrained=true``: which file, whether it is cached.

timm fetches the weights of ``resnet50.a1_in1k`` from the Hugging Face Hub (``model.safetensors``,
else ``pytorch_model.bin``, of the repository ``timm/resnet50.a1_in1k``) or, for a few tags,
from a URL into torch.hub's cache. Everything here answers without the network: the file is
looked up in the local cache (``HF_HUB_CACHE``, ``HF_HOME``, ...), so that a run that cannot
get its weights stops before any work with one line saying which file is missing and how to
get it, instead of timm's retries and a message about the connection.

Loaded only when a run uses a timm backbone (imports timm and huggingface_hub).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ssl_core import UserError

#: Tags shown when a tag is not one of timm's.
_TAGS_SHOWN = 8


@dataclass(frozen=True)
class PretrainedFile:
    """Where timm takes the weights of ``name`` from, and the cached copy if there is one."""

    name: str
    repo_id: str | None  # Hugging Face repository, e.g. timm/resnet50.a1_in1k
    revision: str | None
    filename: str  # the file timm asks the Hub for first (or the URL's file name)
    url: str | None  # url-only tags: torch.hub's cache
    cached: str | None  # the local file, or None
    custom_load: bool  # timm loads these itself (npz files): no overlay
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def cache(self) -> str:
        """The folder the file is looked up in."""
        if self.repo_id is not None:
            from huggingface_hub import constants

            return str(constants.HF_HUB_CACHE)
        import torch.hub

        return str(Path(torch.hub.get_dir()) / "checkpoints")

    def missing(self, why: str) -> str:
        """One line: the weights are not here, why, and how to get them."""
        if self.repo_id is not None:
            folder = "models--" + self.repo_id.replace("/", "--")
            what = f"Hugging Face repo {self.repo_id}, file {self.filename}, cache {self.cache}"
            how = (
                f"fetch them where there is network with 'hf download {self.repo_id} "
                f"{self.filename}' and copy {folder}/ into this cache (or set HF_HUB_CACHE "
                "to a cache holding it)"
            )
        else:
            what = f"{self.url}, cache {self.cache}"
            how = f"download that file into {self.cache}"
        return (
            f"backbone.pretrained=true: timm weights for {self.name} are not cached ({what}) "
            f"and {why}; {how}, or give backbone.weights=PATH"
        )


def _tag_error(name: str, exc: Exception) -> UserError:
    import timm

    arch = name.split(".", 1)[0]
    tags = timm.list_pretrained(f"{arch}.*")
    shown = ", ".join(tags[:_TAGS_SHOWN]) + (" ..." if len(tags) > _TAGS_SHOWN else "")
    valid = f"timm's tags for {arch}: {shown}" if tags else f"timm has no weights for {arch}"
    return UserError(f"backbone={name}: {' '.join(str(exc).split())}; {valid}")


def find(name: str) -> PretrainedFile:
    """The pretrained file of ``name`` (``arch`` for its default tag, or ``arch.tag``).

    :raises UserError: when the tag is not one of timm's, or timm has no weights for ``name``.
    """
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:  # "Invalid pretrained tag (x) for resnet18."
        raise _tag_error(name, exc) from None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise UserError(
            f"backbone.pretrained=true: timm has no pretrained weights for {name}; start from "
            "random weights (backbone.pretrained=false), give backbone.weights=PATH, or choose "
            "a model with weights (timm.list_pretrained())"
        )
    mean, std = tuple(cfg.mean or ()), tuple(cfg.std or ())
    if cfg.file:
        cached = cfg.file if os.path.isfile(cfg.file) else None
        return PretrainedFile(name, None, None, cfg.file, None, cached, False, mean, std)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache
        from timm.models._hub import hf_split

        repo_id, revision = hf_split(cfg.hf_hub_id)
        candidates = (
            [cfg.hf_hub_filename]
            if cfg.hf_hub_filename
            else [
                "model.safetensors",
                "pytorch_model.bin",
            ]
        )
        cached = None
        for filename in candidates:
            # a str is a path; None or a "known not to exist" sentinel is not
            found = try_to_load_from_cache(repo_id, filename, revision=revision)
            if isinstance(found, str):
                cached = found
                break
        return PretrainedFile(
            name, repo_id, revision, candidates[0], None, cached, bool(cfg.custom_load), mean, std
        )
    import torch.hub

    filename = os.path.basename(urlparse(cfg.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    cached = str(path) if path.is_file() else None
    return PretrainedFile(
        name, None, None, filename, cfg.url, cached, bool(cfg.custom_load), mean, std
    )


def offline() -> bool:
    """Whether the Hugging Face Hub may not be asked (``HF_HUB_OFFLINE=1``)."""
    import huggingface_hub

    return bool(huggingface_hub.is_offline_mode())


def check(name: str, *, pretrained: bool, small_input: bool, weights: str | None) -> None:
    """Validate the starting weights of a timm backbone before any work.

    :raises UserError: pretrained with small_input or with backbone.weights, a bad tag, a model
        without weights, or weights neither cached nor reachable (``HF_HUB_OFFLINE``).
    """
    if not pretrained:
        if "." in name and weights is None:
            print(
                f"warning: backbone={name} names timm's pretrained weights "
                f"'{name.split('.', 1)[1]}' but backbone.pretrained=false, so the encoder starts "
                "from random weights; add backbone.pretrained=true to start from them",
                file=sys.stderr,
            )
        if "." in name:
            find(name)  # a bad tag is an error either way (timm refuses to build it)
        return
    if weights is not None:
        raise UserError(
            f"backbone.pretrained=true and backbone.weights={weights} both set the encoder's "
            "starting weights; give one of them"
        )
    if small_input:
        raise UserError(
            f"backbone.pretrained=true does not go with backbone.small_input=true: the small-input "
            f"stem replaces {name}'s 7x7 conv1 and max-pool, so its pretrained stem would be "
            "thrown away and the rest would see features of another scale; drop small_input and "
            "train at a larger data.image_size (e.g. 64 or more), or start from random weights"
        )
    found = find(name)
    if found.cached is None and offline():
        raise UserError(found.missing("HF_HUB_OFFLINE is set"))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rounded = tuple(tuple(round(v, 3) for v in x) for x in (found.mean, found.std))
    if found.mean and rounded != imagenet:
        print(
            f"note: timm's weights for {name} were trained on inputs normalized with mean "
            f"{found.mean} and std {found.std}; ssl_core normalizes with ImageNet's "
            f"{imagenet[0]} and {imagenet[1]}, so they start on slightly shifted inputs",
            file=sys.stderr,
        )


def create_kwargs(name: str) -> dict[str, object]:
    """``timm.create_model`` arguments that load the pretrained weights of ``name``.

    A cached file is given to timm directly (no request to the Hub, even online); otherwise
    timm downloads it.
    """
    found = find(name)
    kwargs: dict[str, object] = {"pretrained": True}
    if found.cached is not None and not found.custom_load:
        kwargs["pretrained_cfg_overlay"] = {"file": found.cached}
    return kwargs


def download_error(name: str, exc: Exception) -> UserError:
    """The one line for weights that could not be fetched (no network, no such file)."""
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    return UserError(find(name).missing(f"fetching them failed ({reason})"))
