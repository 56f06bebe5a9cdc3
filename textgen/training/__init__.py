"""The training loop: tasks, the trainer, processes under torchrun, and training curves."""
