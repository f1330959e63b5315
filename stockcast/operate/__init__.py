"""Operating the champion: published prediction tables, buy / sell / hold decisions, monitoring with its alerts and
retraining trigger, and the daily loop."""
