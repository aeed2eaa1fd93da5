"""Training: `session` (one run, or one stack of seeds, end to end), `loop` (the one training
loop), `members` (what it trains: a model, or several seeds stacked), `optim`, `checkpoint`
(atomic checkpoints, exact resume), `distributed` (DDP under torchrun)."""
