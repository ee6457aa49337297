"""Tests of the human-feedback server, page and client (a package, so that our conftest does not shadow tests/conftest.py as the module ``conftest``)."""
