"""The rendering service: Happo snap requests rendered in headless Chromium."""
