"""Deployment: packaging a champion as a Bento, the targets it runs on, the smoke test, and the rollout with
automatic rollback."""
