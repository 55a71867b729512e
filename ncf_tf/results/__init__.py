"""Results: the paper's experiments as plans of runs, the report and plots made from records."""
