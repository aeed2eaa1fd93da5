"""What a run records: `logger` (metrics.csv, TensorBoard, the progress display) and `probes`
(Figure 1's activation percentiles and their drift)."""
