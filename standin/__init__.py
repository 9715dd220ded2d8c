"""A MongoDB wire-protocol stand-in server, so the real driver runs over a real socket.

No MongoDB server is installable in this environment; ``python -m standin`` speaks
enough of mongod's protocol (reporting MongoDB 7.0, wire version 21) for PyMongo's
``AsyncMongoClient``/``MongoClient`` and Motor.

Design (details in each module):

* ``server``: own thread-per-connection socket loop; OP_MSG parsed here with tz-aware codec
  options, the legacy OP_QUERY handshake through MockupDB's ``OpQuery``/``OpReply``.  MockupDB's
  own server loop serialises every connection under one lock held even while replying and
  matches each request against autoresponders, so it is not used for serving (see
  ``server.py``).
* ``engine``: command execution (CRUD, cursors, indexes, admin), one lock for atomic commands.
* ``store`` + ``indexes``: documents in a dict per collection keyed by ``_id``; hash maps for
  every declared index (unique and not, compound, multikey) maintained on each write.  They
  enforce uniqueness and narrow equality/``$in`` filters to candidates, so per-operation cost
  stays flat as data grows; mongomock's ``filter_applies`` evaluates the full filter on the
  candidates only.
* ``updates``/``projection``/``aggregation``: update operators applied copy-on-write,
  projections, pipelines (hot stages native, the rest via mongomock's stage handlers).
* ``snapshot``: ``--data-file`` persistence, atomic BSON snapshots.
* ``process``: ``StandinProcess``, a subprocess wrapper for tests, ``make run`` and benchmarks.

Known limitations: no transactions (commit/abort answer IllegalOperation), no arrayFilters,
no ``$out``/``$merge``, TTL indexes are recorded but never expire documents, text/geo indexes
are recorded but not searchable, collation and hints are ignored, no authentication/TLS.
"""

from .process import StandinError, StandinProcess

__all__ = ["StandinError", "StandinProcess"]
