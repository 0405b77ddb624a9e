"""Consumers: inbound webhooks from external systems (`outbox serve` at `/hooks/{endpoint}`, issue 22)."""
