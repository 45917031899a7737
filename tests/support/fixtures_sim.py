"""Simulator fixtures (simulator engineer fills this in)."""
