"""Studies: what is asked of many runs (designs, sweeps, metrics, sensitivity, populations, clinical readouts).

Also experiments (scenario files) and calibration.
"""
