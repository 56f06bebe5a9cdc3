"""Labels out of a classifier: prediction, and the n-grams stacked beside its encoder."""
