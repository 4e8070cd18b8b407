"""Data parallelism as a capability: which worker a process is, and what to say when a worker
fails (`health`)."""
