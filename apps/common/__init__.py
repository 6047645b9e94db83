"""Machinery every app shares: the LightningCLI launcher, callbacks, distributed-safe metrics, data helpers."""
