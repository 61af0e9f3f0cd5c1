"""Processing: consumers for transforms, filters, derivatives, quality analysis, pixel diffs."""
