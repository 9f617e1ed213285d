"""Benchmarks, reliability campaigns and demos of simvol: run from a checkout, never installed with the package.

``python -m tools.bench`` (``scripts/bench``), ``python -m tools.campaign`` (``scripts/campaign``),
``python -m tools.demo`` (``scripts/demo``) and ``python -m tools.engine_demo``, from the checkout's root (the
scripts change there first). They use simvol only through its public modules.
"""
