"""What came of the messages: bookings attributed to them and the salon's statistics."""
