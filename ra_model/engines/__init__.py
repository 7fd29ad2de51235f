"""Engines: everything that turns a scenario (phenotype, regimen, overrides) into a results table.

The only room that touches libroadrunner: the engine, ``simulate``, the exact split path, the fast path,
the compiled germ line, and engines compiled from a user's SBML file.
"""
