"""Benchmarks: ``python -m benchmarks`` runs every module here that defines ``main()``."""
