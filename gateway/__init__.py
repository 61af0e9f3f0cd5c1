"""The gateway: the only public entry. Routes, authenticates, limits and proxies."""
