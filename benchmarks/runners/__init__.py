"""Tiny launchers for peer servers that have no command line of their own.

They run only inside ``benchmarks/.venv-bench``; the peers are imported with
``importlib`` so that type checking the repository does not need them installed.
"""
