"""What a run records: `logger` (metrics.csv, TensorBoard, the progress display) and `probes`
(Figure 1's activation percentiles and their drift), `landscape` (why BN helps, measured:
Santurkar et al. 2018's gradient-based covariate shift and loss landscape)."""
