"""Running experiments: sweeps on local processes or SLURM, notebook kernels, the train notebook's helpers, the
project root and demo runs notebooks start from, the allocator training processes use, and the certification
of training-code changes by differential runs. Reads the records of runs (:mod:`reprokit.runs`), drives the
engine; nothing below imports it."""
