"""A client's reply: its label and reason, the enriched prompt for the AI admin, what follows from it."""
