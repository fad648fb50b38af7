"""Built-in datasets for ssl_core: ``digits`` (the default), ``folder`` and ``synthetic``.

A plugin written exactly like an external one: :mod:`ssl_datasets.plugin` registers the
datasets and is imported whenever plugins are listed, so torch, scikit-learn and PIL are
imported only when a dataset is built.

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes), so a run
  works offline out of the box; upsampled once to ``data.image_size``.
- ``folder``: every image file under ``data.path`` (or named in ``data.file_list``), listed
  without being opened and loaded lazily; first-level subfolders (or the list's labels) are
  the classes. The list of files is cached between runs. A file that does not decode is
  skipped when it is loaded, with a warning (or stops the run with ``data.strict=true``).
- ``synthetic``: seeded random images whose classes differ by mean colour (tests, smoke runs).

Labelled datasets are split into train/val per class (stratified), seeded by ``trainer.seed``:
train is what SSL trains on and the kNN memory bank, val is the kNN query set.
"""
