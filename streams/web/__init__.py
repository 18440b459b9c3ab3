"""The worker's HTTP side: Prometheus metrics and the health/readiness server."""
