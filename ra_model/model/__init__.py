"""The model: the Antimony source and its SBML, the parameter table, phenotypes, regimens, result columns.

The ground floor of the package: nothing here runs a simulation or imports another room but errors.
"""
