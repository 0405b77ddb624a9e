"""What operators run: the `outbox` command line, the delivery daemon (`outbox run`), the Notificaties
API (`outbox serve`) and the reference receiver (`outbox receiver`); see docs/ARCHITECTURE.md."""
