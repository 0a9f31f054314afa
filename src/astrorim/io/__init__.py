"""Reading and writing the project's files: atomic writes, simulation shards, FITS, checkpoints."""
