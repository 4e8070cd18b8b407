"""What is made of one run: the accuracy matrix and the metrics derived from it (`metrics`) and
the plots of a run (`plots`). Comparisons of several runs are `sylvan.comparison`'s."""
