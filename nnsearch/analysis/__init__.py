"""Analysis of recorded results: Pareto fronts, hypervolume, reports and plots."""
