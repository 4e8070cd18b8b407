"""What one run has: its context (`context`), which methods are configured with, and the
evaluation of a method on the tasks of a supervised stream (`evaluation`)."""
