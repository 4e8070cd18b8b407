"""What is made of several runs' folders: the mean and spread over seeds of each configuration
(`summary`, `--summarize`) and the accuracy-cost Pareto front (`pareto`, `--pareto`). It sits
above the run, the settings and the methods, whose classes give a recorded run's defaults."""
