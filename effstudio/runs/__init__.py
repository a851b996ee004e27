"""The run store: every training run, its config, metrics and files, in one SQLite database.

``store.RunStore`` holds the schema (versioned, migrated in place) and the
queries; ``recorder.record_run`` taps the training generator's events and writes
them in batches from a background thread; ``export`` writes a run as CSV, JSON
or TensorBoard event files. Qt-free: the CLI, the GUI and torchrun jobs share it.
"""
