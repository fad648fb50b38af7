"""Lifecycle plugins that watch a run without changing it: the online kNN top-1, the online
linear probe, the representation health with its collapse guard, and the progress display.

Each is its own entry point (``knn-monitor``, ``linear-probe``, ``health-monitor``,
``progress``). The monitors measure the encoder while it trains and never change the
training: the probe and the health monitor read detached copies of features (the probe has its
own optimizer), and every evaluation runs with the random number generators saved and
restored, so a run with monitors gives bitwise the same encoder as one without.

Their numbers reach the trackers through the ``metrics`` of ``ssl_epoch_end``: the monitors
run first there (``tryfirst``) and add ``knn/top1`` and ``probe/top1`` (``probe/train_top1``,
``probe/loss``), which the trackers then log at the run's step. The health monitor adds
``health/*`` to the metrics of ``ssl_step_end`` the same way, and its guard may end a run whose
representation collapsed (``trainer.collapse=stop``).
"""
