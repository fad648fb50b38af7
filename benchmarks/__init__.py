"""Runnable measurements of ssl_core's speed and memory: ``python -m benchmarks [--quick]``.

Each part prints a markdown table of figures measured in this run, and ratios between
figures taken in the same process (the machine may be shared and noisy: interleaved rounds
and medians, never a number remembered from elsewhere). ``docs/performance.md`` holds a run
with the machine described.
"""
