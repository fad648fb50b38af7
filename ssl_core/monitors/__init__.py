"""Lifecycle plugins that watch a run without changing it: the online kNN top-1, the online
linear probe, and the progress display.

Each is its own entry point (``knn-monitor``, ``linear-probe``, ``progress``). The monitors
measure the encoder while it trains and never change the training: the probe reads detached
copies of the encoder's features and has its own optimizer, and every evaluation runs with the
random number generators saved and restored, so a run with monitors gives bitwise the same
encoder as one without.

Their numbers reach the trackers through the ``metrics`` of ``ssl_epoch_end``: the monitors
run first there (``tryfirst``) and add ``knn/top1`` and ``probe/top1`` (``probe/train_top1``,
``probe/loss``), which the trackers then log at the run's step.
"""
