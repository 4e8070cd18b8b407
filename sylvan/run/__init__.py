"""What one run has and does: the training engine on Lightning Fabric (`engine`) and its
callbacks (`callbacks`), the run loops (`supervised`, `reinforcement`) and the run context their
methods are configured with (`context`), the evaluation of a supervised stream (`evaluation`),
the cost accounting (`accounting`, `budget`), checkpoints (`checkpoints`, `checkpointer`), the run
folder and its loggers (`tracking`, `loggers`, `run_logger`), and one run from Python or the
command line (`experiment`)."""
