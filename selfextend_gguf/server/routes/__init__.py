"""The server's routes, a router per API family: openai.py (the OpenAI-style /v1 API)
and native.py (llama-server's own endpoints: health, tokenize, detokenize, slots)."""
