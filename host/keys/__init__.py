"""Board identity: a key per board derived from the bundle's secret, and a revocation list."""
