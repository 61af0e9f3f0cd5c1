"""The hash file host: ``POST /api/upload`` any file, get back its hash and URLs, fetch it at
``/f/`` by hash with any extension or file name, delete it; and the ``/upload`` and ``/files``
pages."""
