"""The runtime: anyio actors around the pure core, and the public ``Session``."""
