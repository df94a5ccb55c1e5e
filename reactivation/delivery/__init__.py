"""How a message leaves: the send contract (`contract`), its outcomes (`errors`), the senders (`gateway`,
`cloud_api`, `outbox`, the first two on `http_sender`) and the choice among them (`factory`)."""
