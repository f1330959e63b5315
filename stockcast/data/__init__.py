"""Data collection and versioning: the CSV contract, sources, validation, ingestion into content-versioned
snapshots, and IngestFlow's card. Generated markets live apart, in ``synthetic``."""
