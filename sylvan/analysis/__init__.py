"""What is made of runs once they have run: the accuracy matrix and the metrics derived from it
(`metrics`), the mean and spread over seeds of results folders (`summary`, `--summarize`), the
accuracy-cost Pareto front (`pareto`, `--pareto`) and the plots of a run (`plots`)."""
