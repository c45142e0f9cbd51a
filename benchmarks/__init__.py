"""Benchmarks run by ``make bench``. Each compares side by side in one run
and reports ratios (these machines are noisy; absolute figures are not
comparable across runs)."""
