"""Training curves: TensorBoard event files the host writes while it serves, and
`hostctl report RUN_DIR`, which draws them as one PNG."""
