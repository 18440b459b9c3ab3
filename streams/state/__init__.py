"""Worker state on Kafka: RocksDB-backed Faust tables and the fixes that keep their effects exactly-once."""
