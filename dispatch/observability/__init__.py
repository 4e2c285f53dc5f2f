"""What operations staff watch: Prometheus metrics and structured logs."""
