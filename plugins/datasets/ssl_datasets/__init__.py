"""Built-in datasets for ssl_core: ``digits`` (the default), ``folder`` and ``synthetic``.

A plugin written exactly like an external one: :mod:`ssl_datasets.plugin` registers the
datasets and is imported whenever plugins are listed, so torch, scikit-learn and PIL are
imported only when a dataset is built.

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes), so a run
  works offline out of the box; upsampled once to ``data.image_size``.
- ``folder``: every image file under ``data.path``, loaded lazily; first-level subfolders are
  the classes when every image sits in one. Files that do not open as images are skipped with
  one warning (or stop the run with ``data.strict=true``).
- ``synthetic``: seeded random images whose classes differ by mean colour (tests, smoke runs).

Labelled datasets are split into train/val per class (stratified), seeded by ``trainer.seed``:
train is what SSL trains on and the kNN memory bank, val is the kNN query set.
"""
