"""The quality protocols of DESIGN.md as tested library functions.

Each module holds one protocol: its fixed split and its figures, numpy (and scikit-learn /
scipy) only, so the trainer, the benchmark and a user's own notebook compute a figure the
same way:

- `one_class`: the stratified 80/20 split, calibration of thresholds, one-class AUROC.
- `completion`: the MovieLens split (RandomState(0), 90/10) and RMSE / MAE.
- `modes`: mode coverage on ring-8 and grid-25.
- `sample_quality`: Frechet distance in a classifier's feature space and class coverage.
- `likelihood`: exact log-partition functions and log-likelihoods of small RBMs.
"""
