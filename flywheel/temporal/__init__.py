"""Time columns: the parts a timestamp is read as, the features made of them, their encoding for the model."""
