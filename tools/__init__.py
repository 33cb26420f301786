"""Maintainer tools: not part of the installed package (run from a course checkout: ``python -m tools.NAME``)."""
