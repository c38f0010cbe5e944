"""Training recipes shipped with rvrt (TOML data files; see :mod:`rvrt.train.config`)."""
