"""Faust agents, the worker, the status display and the `usp` command line: thin glue over models."""
