"""Training and evaluation scripts (never imported by the bot or the inference worker)."""
