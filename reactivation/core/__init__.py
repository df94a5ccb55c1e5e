"""The ground floor: settings, errors, logs, phones, instants, the shared rate limiter, morphology, the vocabulary."""
