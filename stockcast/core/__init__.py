"""The plumbing every stage stands on: object storage, the model registry, flow runs and events, configuration
parsing, parameter checks, card components and small table helpers. It imports no other stage."""
