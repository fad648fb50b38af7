"""The parts SSL methods share, so that a method plugin says only what its paper says.

- :func:`~ssl_core.methods.heads.mlp`: every projector and predictor, with the paper's flags;
- :class:`~ssl_core.methods.targets.EMA` and :func:`~ssl_core.methods.targets.momentum_copy`:
  a target network that follows the online one, updated by the core after each step;
- :class:`~ssl_core.methods.param_groups.ParamGroup` and
  :func:`~ssl_core.methods.param_groups.param_groups`: parameter groups with their own
  learning-rate and weight-decay rules;
- :func:`~ssl_core.methods.per_view_batchnorm.forward_views`: several views through a network
  in one pass, BatchNorm normalizing each view on its own.

Plugins import these from :mod:`ssl_core` itself, the declared public surface.
"""
