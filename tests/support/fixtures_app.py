"""App fixtures (app-foundation engineer fills this in)."""
