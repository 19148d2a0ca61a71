"""Event-stream dialects, one module each: how a stream of that API is assembled into one
answer (stored only when the stream finished) and replayed from one (a stream hit)."""
