"""Development stack launcher (tooling, not shipped): the stand-in, migrations, seed, uvicorn."""
