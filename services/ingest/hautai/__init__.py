"""The Haut.ai-style API: companies → datasets → subjects → image batches; signed upload URLs
and their ``PUT``, compute (processing's quality analysis), aux images, paginated lists, signed
file URLs."""
