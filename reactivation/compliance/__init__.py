"""Consent, opt-outs and retention: what the law requires of the salon."""
