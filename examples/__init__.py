"""Runnable examples; a package so that tests can import the model exporters."""
