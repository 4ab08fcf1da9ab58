"""The benchmark harness: ``python -m bench`` (``make bench``) against the local stack."""
