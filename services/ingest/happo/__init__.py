"""The Happo Image API: signed upload URLs, uploads by hash, ``/img/`` serving, and the
internal lookups reports and rendering use."""
