"""Korean text without models: label names, keywords, particles (josa), object slots and the
template comments. Torch-free; the bot, the models and the training scripts share it."""
