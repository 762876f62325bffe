"""Change streams: a CRM's events stored in a durable inbox, applied by fetching the records
they name through the page path, gaps answered with incremental polls (docs/streams.md)."""
