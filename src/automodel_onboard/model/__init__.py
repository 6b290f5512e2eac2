"""Reading and describing a model: source -> classification, features, names, tiny config, reference -> spec."""
