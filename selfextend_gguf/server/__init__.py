"""An OpenAI-compatible HTTP server over Llama slots (FastAPI + uvicorn)."""
