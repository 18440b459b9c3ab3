"""Worker state on Kafka: RocksDB-backed Faust tables, the fixes that keep their effects exactly-once, and each owned partition's log (holes, graph catch-up, snapshots, sweep)."""
