"""How a message leaves: the WhatsApp senders and their errors."""
