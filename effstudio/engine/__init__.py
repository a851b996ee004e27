"""Training and evaluation as generators of events, checkpoints, devices, memory."""
