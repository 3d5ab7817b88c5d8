"""Measuring detection quality: planting errors (corrupt) and evaluating rankings."""
