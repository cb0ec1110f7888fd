"""Using a trained generator: webapp (``animegan-serve``'s page) and model_folder (the
Hugging Face-style folder ``animegan-export`` writes and every loader reads)."""
