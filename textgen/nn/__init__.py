"""The recurrent models, their precision, and how checkpoints store and rebuild them."""
