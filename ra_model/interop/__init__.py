"""Interop: the model in other tools' formats: SBML export and annotations, OMEX/SED-ML, COPASI, health check."""
