"""The only Kubernetes I/O of the operator: the API client, the watched cluster view, snapshot building."""
