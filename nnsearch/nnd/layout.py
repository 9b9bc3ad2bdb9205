"""The NN Dataset's file layout, as nnsearch reads (`importing`) and writes (`exporting`) it.

The layout (as in ABrain-One/nn-dataset, whose `ab/nn` folder is the root here):
    stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json   JSON list of trials
    stat/run/<runtime>/<precision>/<config>/<os>_<device>.json   on-device runtimes (`nnsearch.nnd.runs`)
    stat/nn/<nn>.json   per-model statistics (params, flops, ...)
    nn/<nn>.py   metric/<metric>.py   transform/<transform>.py   source code
A trial is {"accuracy", "duration", "transform", "uid", <hyperparameters>..., <training diagnostics>...}.
nnsearch adds `stat/nnsearch/<nn>.json` (Arch JSON, size and cost, its own
latency runs), a file the NN Dataset's reader never looks at.

One scale per metric name: the NN Dataset's `psnr` is a normalised score (about
0.7), nnsearch's `psnr` is decibels. Its `psnr` folders are imported as metric
`psnr-nnd`, and nnsearch's decibel `psnr` is exported as folder metric `psnrdb`
(imported back as `psnr`); see `METRIC_IMPORT_NAMES`.
"""

from __future__ import annotations

#: Trial keys that are not hyperparameters.
RESERVED = ("accuracy", "duration", "transform", "uid")
#: The NN Dataset's training diagnostics -> (train_stat field, factor to its unit).
DIAGNOSTICS = {
    "train_loss": ("train_loss", 1.0),
    "test_loss": ("val_loss", 1.0),
    "gradient_norm": ("grad_norm", 1.0),
    "samples_per_second": ("samples_per_s", 1.0),
    "gpu_memory_kb": ("gpu_mem_mb", 1 / 1024),
}
#: Per-trial results that are neither hyperparameters nor kept.
RESULTS = ("train_stat", "train_accuracy", "best_accuracy", "best_epoch", "lr_now")
#: Folder metric name -> stored metric name, where the two differ (one scale per stored name).
METRIC_IMPORT_NAMES = {"psnr": "psnr-nnd", "psnrdb": "psnr"}
METRIC_EXPORT_NAMES = {v: k for k, v in METRIC_IMPORT_NAMES.items()}
NND_PSNR_CODE = "# The NN Dataset's 'psnr': a normalised score in [0, 1] (not decibels), as its files record it\n"
DEFAULT_TRANSFORM = "default"
SIDECAR = "nnsearch"
