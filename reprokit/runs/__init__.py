"""The records of finished runs: loading them into tables (results), their statistics (stats), where they
computed (origin), and replaying them with today's code (replay). Below the experiments and the entry points,
above the engine whose records it reads; whether a record is current is :mod:`reprokit.codeversion`'s, which the
engine uses too."""
