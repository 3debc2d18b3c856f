"""PURE: manifests the operator creates for a job (worker pods, rendezvous pod and service, token secret,
network policy). Inputs are plain values; no client, no clock."""
