"""`hostctl demo`: the local session runner (`host/session`) with defaults that finish in
about a minute on a 2-core machine, on the embedded synthetic data."""
