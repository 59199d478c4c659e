"""What operators see: Prometheus metrics, request-scoped logs, readiness."""
