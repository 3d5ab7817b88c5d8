"""Inputs: reading masks and prediction stores, writing stores, atomic files, tables."""
