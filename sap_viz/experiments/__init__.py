"""Experiments that combine the parts: train-and-evaluate, layer sweep, steering evaluation, benchmark."""
