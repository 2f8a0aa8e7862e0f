"""Files and processes: audio I/O and checks, atomic writes, checkpoints, folder locks, worker pools, provenance."""
