"""The networks and what they learn.

models (the seed's DCGAN), architecture (the record of what decides the tensors' shapes),
objectives (D's and G's losses, penalties), gan (optimizers and the one ``training_step``),
augment (DiffAugment, ADA), faces (latents, truncation, grids and GIFs from a generator).
"""
