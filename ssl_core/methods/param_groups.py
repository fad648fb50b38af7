"""How a method shapes its own optimization: parameter groups with their own rules.

The core optimizes every trainable parameter of the model with ``optim.*`` (LARS by default,
learning rate ``optim.lr × batch/256`` with warm-up and cosine decay, ``optim.weight_decay``).
A method whose paper treats some parameters differently answers ``ssl_param_groups(model)``
with :class:`ParamGroup` objects, usually made by :func:`param_groups`::

    @hookimpl
    def ssl_param_groups(self, model):
        # Chen & He 2021, §4.1: the predictor's learning rate is not decayed
        return param_groups(model, {"predictor": {"fixed_lr": True}})

Every group's learning rate and weight decay are logged per step as ``lr/<name>`` and
``wd/<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class ParamGroup:
    """Parameters that share optimization rules.

    :param name: shown in the logged metrics (``lr/predictor``).
    :param params: the parameters; each trainable parameter of the model must be in exactly one
        group, and parameters with ``requires_grad=False`` in none.
    :param lr_scale: this group's learning rate is the run's times this factor.
    :param fixed_lr: keep the learning rate at its base value (``optim.lr × batch/256 ×
        lr_scale``): no warm-up, no decay.
    :param weight_decay: this group's own weight decay, constant; ``None`` follows
        ``optim.weight_decay`` (and its schedule to ``optim.weight_decay_end``).
    :param exclude_from_lars: no LARS trust ratio for this group (plain momentum SGD).
    :param frozen_epochs: the group is not updated during the first ``frozen_epochs`` epochs
        (its gradients are dropped before the optimizer step, as DINO does to its last layer).
    """

    name: str
    params: list[nn.Parameter] = field(repr=False)
    lr_scale: float = 1.0
    fixed_lr: bool = False
    weight_decay: float | None = None
    exclude_from_lars: bool = False
    frozen_epochs: int = 0


#: What the parameters with ``ndim <= 1`` (biases, normalization scales and shifts) get: no
#: weight decay and no LARS adaptation (BYOL, Appendix C; SimCLR; Barlow Twins).
NO_DECAY = {"weight_decay": 0.0, "exclude_from_lars": True}


def param_groups(
    model: nn.Module,
    rules: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    no_decay: Mapping[str, Any] | None = None,
    split_no_decay: bool = True,
) -> list[ParamGroup]:
    """The trainable parameters of ``model`` in groups: the core's default, with ``rules``.

    Each key of ``rules`` names a submodule of ``model`` (``"predictor"``,
    ``"student_head.last_layer"``); its parameters form a group of that name with the rule's
    :class:`ParamGroup` settings. The other parameters form the group ``"default"``. Within each
    group the parameters with ``ndim <= 1`` (biases, normalization parameters) form a group of
    their own, ``"<name>.no_decay"``, with :data:`NO_DECAY` and the settings of ``no_decay``
    (Barlow Twins' ``{"lr_scale": 0.024}``) on top; ``split_no_decay=False`` keeps them in
    their group (SimSiam's reference decays every parameter). Empty groups are dropped;
    parameters with ``requires_grad=False`` (targets) are left out.

    :raises ValueError: when a rule names no submodule of ``model``.
    """
    rules = dict(rules or {})
    owner: dict[int, str] = {}
    for prefix in rules:
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            raise ValueError(f"param_groups: the model has no submodule '{prefix}'") from None
        for param in module.parameters():
            owner.setdefault(id(param), prefix)
    names = ["default", *rules]
    members: dict[str, tuple[list[nn.Parameter], list[nn.Parameter]]] = {
        name: ([], []) for name in names
    }
    for param in model.parameters():
        if not param.requires_grad:
            continue
        regular, small = members[owner.get(id(param), "default")]
        (small if param.ndim <= 1 and split_no_decay else regular).append(param)
    groups = []
    for name in names:
        settings = dict(rules.get(name, {}))
        regular, small = members[name]
        if regular:
            groups.append(ParamGroup(name, regular, **settings))
        if small:
            groups.append(
                ParamGroup(
                    f"{name}.no_decay", small, **{**settings, **NO_DECAY, **(no_decay or {})}
                )
            )
    return groups


def check_groups(model: nn.Module, groups: list[ParamGroup], where: str) -> None:
    """Every trainable parameter of ``model`` in exactly one group, and nothing else.

    :raises ValueError: naming ``where`` (the method) and the first offending parameter.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    seen: set[int] = set()
    for group in groups:
        for param in group.params:
            key = id(param)
            if key in seen:
                raise ValueError(f"{where}: parameter '{names.get(key, '?')}' is in two groups")
            if not param.requires_grad:
                raise ValueError(
                    f"{where}: parameter '{names.get(key, '?')}' does not train "
                    f"(requires_grad=False) but is in group '{group.name}'"
                )
            seen.add(key)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"{where}: trainable parameter '{missing[0]}' is in no group")
