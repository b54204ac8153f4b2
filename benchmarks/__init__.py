"""Speed benchmarks (`python -m benchmarks.<name>`); they print ratios."""
