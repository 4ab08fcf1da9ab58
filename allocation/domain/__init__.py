"""The domain: pure Python, no imports from adapters, service layer or entrypoints."""
