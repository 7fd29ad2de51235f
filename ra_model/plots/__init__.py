"""Plots: every matplotlib figure (time courses, cohorts, sensitivity); tables in, figures out."""
