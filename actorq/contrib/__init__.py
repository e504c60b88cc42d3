"""Optional integrations, each importable only when its extra is installed:
``actorq.contrib.otel`` (``pip install 'actorq[otel]'``) and ``actorq.contrib.prometheus``
(``pip install 'actorq[prometheus]'``). Both are middleware (see `actorq.Middleware`)."""
