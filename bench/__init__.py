"""The jozvesaz benchmark: throughput, memory and accuracy against the tools users would pick.

Run it with ``python bench/run.py``; ``bench/README.md`` explains every number.
"""
