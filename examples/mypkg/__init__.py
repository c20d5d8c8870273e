"""A user's own parts for nnlab, in their own package (see ../README.md)."""
