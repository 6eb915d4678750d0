"""Review and correct a slide's results in a browser, then count again (``glomkit review``,
``glomkit recount``). The server needs the ``review`` extra: ``pip install 'glomkit[review]'``."""
