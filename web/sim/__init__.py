"""The Antom simulator: a signed, stateful stand-in for the Antom gateway (see app.py)."""
