"""What the message says: Gemini, the templates, Russian declension, first names, validation, composing."""
