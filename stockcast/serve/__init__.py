"""Answering: the serving bundle, the prediction code shared by the HTTP service and batch prediction, request
micro-batching, the service's Python client, and batch prediction."""
