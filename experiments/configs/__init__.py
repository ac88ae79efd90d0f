"""One ml_collections config file per results-table row; shared defaults in ``base``."""
