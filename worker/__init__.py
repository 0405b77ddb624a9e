"""What operators run: the `outbox` command line (and, later, the delivery daemon)."""
